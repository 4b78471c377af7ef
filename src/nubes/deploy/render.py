"""Plans and status for people (a rich table) and machines (JSON).

Values are shortened for the table only (a policy document becomes ``{...}`` with its size);
JSON carries everything. Nothing here prints: callers pass a rich ``Console``.
"""

from __future__ import annotations

import json
from typing import Any

from nubes.deploy.model import Plan

_STYLE = {"create": "green", "update": "yellow", "delete": "red", "unchanged": "dim"}
_SIGN = {"create": "+", "update": "~", "delete": "-", "unchanged": "="}


def short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 12] + f"… ({len(text)} chars)"


def plan_table(plan: Plan, *, verbose: bool = False) -> Any:
    """A rich Table: one row per change (unchanged rows only when ``verbose``), with what changes."""
    from rich.markup import escape
    from rich.table import Table

    counts = plan.counts()
    summary = ", ".join(f"{counts[a]} to {a}" if a != "unchanged" else f"{counts[a]} unchanged" for a in counts)
    table = Table(title=f"{plan.name} on {plan.cloud}: {summary}", title_justify="left")
    table.add_column("", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("changes", overflow="fold")
    for change in plan.changes:
        if change.action == "unchanged" and not verbose:
            continue
        if change.action == "update":
            what = "\n".join(f"{k}: {short(old)} → {short(new)}" for k, (old, new) in change.fields.items())
        elif change.action == "create":
            props = {k: v for k, v in change.resource.properties.items() if v is not None}
            what = ", ".join(f"{k}={short(v, 40)}" for k, v in props.items()) or ("retained: kept on destroy"
                                                                                   if change.resource.retain else "")
        else:
            what = ""
        style = _STYLE[change.action]
        table.add_row(f"[{style}]{_SIGN[change.action]} {change.action}[/]", escape(change.resource.kind), escape(change.resource.name),
                      escape(what))
    return table


def plan_json(plan: Plan) -> str:
    return json.dumps(plan.to_json(), indent=2, sort_keys=False, default=str)


def status_table(status: dict[str, Any]) -> Any:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"{status['name']} on {status['cloud']}"), show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    for what, value in _status_rows(status):
        table.add_row(what, escape(value))
    return table


def _status_rows(status: dict[str, Any]) -> list[tuple[str, str]]:
    drift = status["drift"]
    return [
        ("deployed", "yes" if status["deployed"] else "no"),
        ("version", str(status["version"] or "-")),
        ("code sha256", str(status["code_sha256"] or "-")),
        ("url", str(status["url"] or "-")),
        ("resources", "\n".join(f"{r['kind']} {r['name']}" for r in status["resources"]) or "-"),
        ("drift", "none" if not drift else "\n".join(
            f"{d['action']} {d['kind']} {d['name']}" + (f": {', '.join(d.get('changes', {}))}" if d.get("changes") else "")
            for d in drift)),
    ]


__all__ = ["plan_json", "plan_table", "short", "status_table"]
