"""`nubes costs --reconcile LOGFILE`: records lost on a cloud instance (buffered when it was reclaimed) come back
from the invocations' log lines, exactly once, however often it runs and whatever wraps the lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import nubes
from nubes.cli.main import cli
from nubes.core.events import Platform
from nubes.core.request import Request
from nubes.metering import configure, flush, meter_of
from nubes.metering.ledger import records
from nubes.metering.reconcile import reconcile, records_in

REAL = Platform("aws", function_name="f", memory_mb=512, region="eu-west-1")
APP = """
import nubes
app = nubes.App("reconciled")

@app.get("/work/{i}")
def work(ctx, i: int):
    return {"i": i}
"""


def run(app: nubes.App, n: int, capsys: pytest.CaptureFixture[str]) -> tuple[list[str], str]:
    ids = [app.handle(Request("GET", f"/work/{i}"), platform=REAL).headers["x-nubes-request-id"] for i in range(n)]
    return ids, capsys.readouterr().err


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> nubes.App:
    (tmp_path / "rapp.py").write_text(APP, encoding="utf-8")
    monkeypatch.setenv("NUBES_STORAGE", f"file://{tmp_path / 'home'}")
    monkeypatch.setenv("NUBES_LOG_LEVEL", "info")
    monkeypatch.chdir(tmp_path)
    from nubes.core.loader import load_app

    app = load_app(f"{tmp_path / 'rapp.py'}:app")
    configure(app, cloud_batch_size=1000, cloud_max_age_s=3600)
    return app


def lose_buffer(app: nubes.App) -> int:
    """The instance is reclaimed: whatever its ledger journal still buffers is gone."""
    journal = meter_of(app).ledger().journal
    lost = journal.buffered
    journal._segment = None
    return lost


def test_lost_records_come_back_from_log_lines_once(app: nubes.App, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    first, log1 = run(app, 30, capsys)
    assert flush(app)
    second, log2 = run(app, 20, capsys)
    assert lose_buffer(app) == 20
    assert {r["request_id"] for r in records(app.storage)} == set(first)
    logfile = tmp_path / "lambda.log"
    # CloudWatch-style prefixes, unrelated lines, a torn last line
    text = "".join(f"2026-11-25T10:00:00Z\tINFO\t{line}\n" for line in (log1 + log2).splitlines())
    logfile.write_text("START RequestId: x\n" + text + '{"msg": "invocation", "record_id": "tor', encoding="utf-8")
    runner = CliRunner()
    out = runner.invoke(cli, ["costs", str(tmp_path / "rapp.py"), "--reconcile", str(logfile), "--by", "request",
                              "--format", "json"])
    assert out.exit_code == 0, out.output
    assert "50 records in the log, 30 already in the ledger, restored 20" in out.stderr
    got = [r["request_id"] for r in json.loads(out.stdout)["rows"]]
    assert sorted(got) == sorted(first + second)
    again = runner.invoke(cli, ["costs", str(tmp_path / "rapp.py"), "--reconcile", str(logfile), "--format", "json"])
    assert again.exit_code == 0 and "restored 0" in again.stderr
    assert sorted(r["request_id"] for r in records(app.storage)) == sorted(first + second)
    # the restored records are the ones the meter wrote, field for field
    restored = {r["request_id"]: r for r in records(app.storage)}
    line = next(json.loads(x) for x in log2.splitlines() if second[0] in x)
    assert restored[second[0]]["cost_usd"] == line["cost_usd"] and restored[second[0]]["record_id"] == line["record_id"]


def test_cloudwatch_export_and_dry_run(app: nubes.App, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ids, log = run(app, 5, capsys)
    lose_buffer(app)
    export = {"events": [{"timestamp": 1, "message": line + "\n"} for line in log.splitlines()], "searchedLogStreams": []}
    text = json.dumps(export)
    assert len(records_in([text])) == 5
    assert reconcile(app.storage, text, dry_run=True)["missing"] == 5
    assert list(records(app.storage)) == []
    assert reconcile(app.storage, text)["restored"] == 5
    assert sorted(r["request_id"] for r in records(app.storage)) == sorted(ids)


def test_a_missing_log_file_is_a_clear_error(app: nubes.App, tmp_path: Path) -> None:
    out = CliRunner().invoke(cli, ["costs", str(tmp_path / "rapp.py"), "--reconcile", str(tmp_path / "nope.log")])
    assert out.exit_code == 2 and "cannot read it" in out.output
