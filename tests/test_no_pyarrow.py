"""The base install has no pyarrow (it does not fit Lambda beside DuckDB and Polars): every table path
must work without it. Runs the scenarios in a fresh interpreter where importing pyarrow fails."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCENARIO = textwrap.dedent(
    """
    import sys
    sys.modules["pyarrow"] = None  # any import of pyarrow now raises ImportError
    import io, uuid
    import polars as pl
    import nubes
    from nubes.testing import Client

    store_uri = f"mem://no-pyarrow-{uuid.uuid4().hex}"
    store = nubes.storage.open(store_uri)
    buf = io.BytesIO()
    pl.DataFrame({"region": ["n", "s", "n"], "amount": [1.5, 2.0, 3.0]}).write_parquet(buf)
    store.put("sales.parquet", buf.getvalue())
    app = nubes.App("np", storage=f"mem://home-{uuid.uuid4().hex}")
    app.dataset("sales", f"{store_uri}/sales.parquet")

    @app.get("/sql")
    def by_sql(ctx):
        return ctx.sql("select region, sum(amount) as total from sales group by 1 order by 1")

    @app.get("/table")
    def by_table(ctx):
        return ctx.table("sales").group_by("region").agg(pl.col("amount").sum()).sort("region")

    @app.post("/write")
    def write(ctx):
        ctx.write(f"{store_uri}/out/", pl.DataFrame({"x": [1, 2]}))
        ctx.write(f"{store_uri}/copy/", ctx.sql("select * from sales"), partition_by="region")
        return {"ok": True}

    client = Client(app)
    assert client.get("/sql").json() == [{"region": "n", "total": 4.5}, {"region": "s", "total": 2.0}]
    assert client.get("/table").json() == [{"region": "n", "amount": 4.5}, {"region": "s", "amount": 2.0}]
    for fmt in ("csv", "parquet", "arrow", "ndjson"):
        r = client.get(f"/sql?format={fmt}")
        assert r.status_code == 200, (fmt, r.text)
    assert client.post("/write").json() == {"ok": True}
    assert "pyarrow" not in [m.split(".")[0] for m in sys.modules if sys.modules[m] is not None]
    print("ok")
    """
)


def test_tables_queries_and_writes_work_without_pyarrow() -> None:
    r = subprocess.run([sys.executable, "-c", SCENARIO], capture_output=True, text=True, timeout=300,
                       env={"NUBES_LOG_LEVEL": "off", "PATH": ""})
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]
