"""Shared checks for trigger bindings: each cloud package states its own naming rules with these."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

Rule = Callable[[str], str | None]


def split_uri(uri: str) -> tuple[str, str, str]:
    """``("s3", "bucket", "in/")`` for ``s3://bucket/in``: scheme, bucket, prefix ('' or ending in '/')."""
    scheme, sep, rest = uri.partition("://")
    bucket, _, prefix = rest.split("?", 1)[0].partition("/")
    prefix = prefix.strip("/")
    return (scheme.lower() if sep else ""), bucket, (prefix + "/" if prefix else "")


def pattern(regex: str, rule: str) -> Rule:
    """A rule that refuses names not matching ``regex`` with the text ``rule``."""
    compiled = re.compile(regex)

    def check(name: str) -> str | None:
        return None if compiled.fullmatch(name) else rule

    return check


def problems(cloud: str, scheme: str, bucket_rule: Rule, queue_rule: Rule, queue_kind: str,
             sources: Mapping[str, str], queues: Mapping[str, str]) -> list[str]:
    """Every binding of ``sources`` (URIs on ``scheme``) and ``queues`` that ``cloud`` refuses, with its fix."""
    out: list[str] = []
    for name, uri in sources.items():
        got, bucket, _ = split_uri(uri)
        if got != scheme or not bucket:
            out.append(f"[deploy.{cloud}.sources] {name} = {uri!r}: bind it to a {scheme}://BUCKET[/PREFIX] URI")
            continue
        why = bucket_rule(bucket)
        if why:
            out.append(f"[deploy.{cloud}.sources] {name} = {uri!r}: {bucket!r} is not a valid name ({why})")
    for name, real in queues.items():
        why = queue_rule(real)
        if why:
            out.append(f"[deploy.{cloud}.queues] {name} = {real!r}: not a valid {queue_kind} name ({why})")
    return out


def bucket_rule(regex: str, rule: str, *refusals: tuple[Callable[[str], bool], str]) -> Rule:
    """A bucket-name rule: ``regex`` (else ``rule``), then each ``(refuses, why)`` in turn."""
    shape = pattern(regex, rule)

    def check(name: str) -> str | None:
        why = shape(name)
        if why:
            return why
        return next((text for refuses, text in refusals if refuses(name)), None)

    return check


def is_ip(name: str) -> bool:
    return re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name) is not None
