"""The README's promises: .ci/run runs exactly its test command; the public API it shows exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```\n(.+?)\n```", section)


def test_ci_runs_the_readme_test_command() -> None:
    quickstart, tests = readme_commands()
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert tests in ci
    assert "examples/quickstart/tour.py" in quickstart and quickstart.startswith("python3 -m venv .venv")


def test_readme_python_example_defines_a_working_app() -> None:
    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(from dataclasses.+?)```", text, re.S).group(1)  # type: ignore[union-attr]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    from nubes.testing import Client

    client = Client(namespace["app"])
    assert client.post("/orders", json={"item": "tea", "qty": 2}).json()["ok"] is True
    assert client.post("/orders", json={"item": "tea"}).status_code == 422
    assert client.get("/regions/north/days?since=notadate").status_code == 422
