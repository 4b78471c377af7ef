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
    gates = ci[ci.index(tests) + 1 :]
    assert gates and all(g in " ".join(gates) for g in ("ruff check", "mypy", "lint-imports"))
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


def test_every_public_import_the_readme_shows_works() -> None:
    """Each `from nubes... import ...` / `import nubes...` line in the README's code blocks imports."""
    import importlib

    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.+?)```", text, re.S)
    lines = {line.strip() for block in blocks for line in block.splitlines()
             if re.match(r"\s*(from nubes[\w.]* import |import nubes)", line)}
    assert len(lines) >= 8
    for line in sorted(lines):
        code = line.split("#", 1)[0].strip()
        if code.startswith("from myapp"):
            continue
        module = code.split()[1]
        importlib.import_module(module)
        if code.startswith("from "):
            names = [n.strip().split(" as ")[0] for n in code.split(" import ", 1)[1].strip("()").split(",")]
            missing = [n for n in names if n and not hasattr(importlib.import_module(module), n)
                       and importlib.util.find_spec(f"{module}.{n}") is None]
            assert not missing, f"README: {line!r}: {missing} not importable"
