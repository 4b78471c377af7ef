"""`nubes invoke` and `nubes routes`, run as the installed console script (a real process)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import CONTRACT_APP

NUBES = str(Path(sys.executable).with_name("nubes"))
APP = str(CONTRACT_APP)


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "NUBES_LOG_LEVEL": "off"}
    return subprocess.run([NUBES, *args], capture_output=True, cwd=cwd, env=env, timeout=120)


def test_invoke_get_with_query_and_include() -> None:
    r = run("invoke", APP, "GET", "/hello/ada", "-q", "times=2", "-i")
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.decode().partition("\n\n")
    assert head.splitlines()[0] == "HTTP/1.1 200 OK"
    assert "content-type: application/json" in head.splitlines()
    assert json.loads(body)["greeting"] == "hello ada hello ada"


def test_invoke_post_json_and_file_body(tmp_path: Path) -> None:
    r = run("invoke", APP, "POST", "/orders", "-d", '{"item": "tea", "qty": 2, "price": 1.5}')
    assert r.returncode == 0 and json.loads(r.stdout)["total"] == 3.0
    body = tmp_path / "order.json"
    body.write_text('{"item": "cake", "qty": 1, "price": 4}')
    r = run("invoke", APP, "POST", "/orders", "-d", f"@{body}")
    assert json.loads(r.stdout)["order"]["item"] == "cake"


def test_invoke_csv_via_accept_header() -> None:
    r = run("invoke", APP, "GET", "/sales", "-H", "Accept: text/csv", "-q", "region=south")
    assert r.stdout.decode().splitlines() == ["region,day,amount", "south,2024-01-01,7.25"]


def test_invoke_binary_to_file(tmp_path: Path) -> None:
    import polars as pl

    out = tmp_path / "sales.parquet"
    r = run("invoke", APP, "GET", "/sales?format=parquet", "-o", str(out))
    assert r.returncode == 0
    assert pl.read_parquet(io.BytesIO(out.read_bytes())).height == 3


def test_invoke_error_status_exits_1_with_problem_body() -> None:
    r = run("invoke", APP, "GET", "/types", "-q", "i=notanint")
    assert r.returncode == 1
    problem = json.loads(r.stdout)
    assert problem["status"] == 422 and problem["errors"][0]["name"] == "i"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["invoke", "missing.py", "GET", "/"], "no file 'missing.py'"),
        (["invoke", f"{APP}:nope", "GET", "/"], "has no attribute 'nope'; it defines app"),
        (["invoke", f"{APP}:SALES", "GET", "/"], "is a list, not a nubes.App"),
        (["invoke", "no_such_module:app", "GET", "/"], "no module named 'no_such_module'"),
        (["invoke", APP, "FETCH", "/"], "unknown HTTP method 'FETCH'"),
        (["invoke", APP, "GET", "hello"], "must start with '/'"),
        (["invoke", APP, "GET", "/", "-q", "novalue"], "is not key=value"),
        (["invoke", APP, "GET", "/", "-H", "NoColon"], "is not 'Name: value'"),
        (["invoke", APP, "POST", "/orders", "-d", "@/nonexistent.json"], "no file '/nonexistent.json'"),
        (["routes", APP, "--format", "xml"], "--format 'xml'"),
        (["serve", APP, "--port", "70000"], "is not a TCP port"),
    ],
)
def test_cli_mistakes_exit_2_with_a_fix_and_no_traceback(args: list[str], message: str) -> None:
    r = run(*args)
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert message in " ".join(err.split()), err
    assert "Traceback" not in err


def test_broken_user_module_names_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import nubes\napp = nubes.App('b')\nundefined_name\n")
    r = run("invoke", str(broken), "GET", "/")
    err = " ".join(r.stderr.decode().split())
    assert r.returncode == 2 and "NameError" in err and "line 3" in err and "Traceback" not in err


def test_module_spec_with_sibling_import(tmp_path: Path) -> None:
    pkg = tmp_path / "shop"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "prices.py").write_text("PRICE = 3\n")
    (pkg / "api.py").write_text(
        "import nubes\nfrom shop.prices import PRICE\nservice = nubes.App('shop')\n"
        "@service.get('/price')\ndef price(ctx):\n    return {'price': PRICE}\n"
    )
    r = run("invoke", "shop.api:service", "GET", "/price", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"price": 3}


def test_routes_lists_routes_as_json_and_table() -> None:
    r = run("routes", APP, "--format", "json")
    listed = json.loads(r.stdout)
    by_path = {row["path"]: row for row in listed["routes"]}
    assert by_path["/hello/{name}"]["methods"] == ["GET"]
    assert by_path["/hello/{name}"]["handler"] == "contract_app:hello"
    assert "name (path, required)" in by_path["/hello/{name}"]["parameters"]
    assert by_path["/hello/{name}"]["kind"] == "route" and by_path["/_nubes/openapi.json"]["kind"] == "built-in"
    assert listed["events"] == []
    table = run("routes", APP).stdout.decode()
    assert "/orders/{order_id}" in table and "contract: " in table
