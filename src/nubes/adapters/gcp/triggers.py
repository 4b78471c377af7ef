"""Google Cloud naming rules for trigger bindings (Cloud Storage buckets of ``[deploy.gcp.sources]``,
Pub/Sub topics of ``[deploy.gcp.queues]``), each with its source."""

from __future__ import annotations

from collections.abc import Mapping

from nubes.adapters.naming import bucket_rule, is_ip, pattern, problems

# cloud.google.com/storage/docs/buckets#naming: lower-case letters, digits, '-', '_' and '.';
# start and end with a letter or digit; 3-63 characters (up to 222 with dots, 63 per component);
# not an IP address; not starting with "goog" nor containing "google".
bucket_problem = bucket_rule(
    r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]", "lower-case letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
    (lambda n: any(len(part) > 63 for part in n.split(".")), "at most 63 characters (222 with dots, 63 between dots)"),
    (lambda n: is_ip(n) or n.startswith("goog") or "google" in n, "not an IP address, not starting with 'goog' nor containing 'google'"),
)


# cloud.google.com/pubsub/docs/create-topic#resource_names: 3-255 characters, starting with a letter,
# letters, digits, '-', '_', '.', '~', '+' and '%'; not starting with "goog".
_TOPIC = pattern(r"[A-Za-z][A-Za-z0-9._~+%-]{2,254}", "3-255 letters, digits and - _ . ~ + %, starting with a letter")


def topic_problem(name: str) -> str | None:
    return _TOPIC(name) or ("must not start with 'goog'" if name.lower().startswith("goog") else None)


def binding_problems(sources: Mapping[str, str], queues: Mapping[str, str]) -> list[str]:
    return problems("gcp", "gs", bucket_problem, topic_problem, "Pub/Sub topic", sources, queues)
