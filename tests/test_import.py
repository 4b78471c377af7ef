"""`import nubes` stays light: no data library, no cloud SDK (timing lives in bench/import_time.py)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("duckdb", "polars", "sklearn", "numpy", "pyarrow", "boto3", "botocore", "google.cloud.storage",
         "google.api_core", "azure", "functions_framework", "flask", "typer", "rich", "jwt", "cryptography")


def test_import_nubes_loads_no_heavy_library() -> None:
    code = ("import sys, json; before = set(sys.modules); import nubes, nubes.storage, nubes.testing, nubes.errors; "
            "print(json.dumps(sorted(set(sys.modules) - before)))")
    added = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    heavy = [m for m in added if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert heavy == []
    assert "nubes.core.app" in added  # the probe did import nubes


def test_metering_a_local_invocation_loads_no_cloud_framework() -> None:
    """Pricing reads every cloud's price models; that must not import Flask or the Azure SDK (cold start)."""
    code = ("import sys, json, tempfile; import nubes; from nubes.testing import Client; "
            "app = nubes.App('p', storage='file://' + tempfile.mkdtemp()); app.get('/')(lambda ctx: {'ok': 1}); "
            "r = Client(app).get('/'); assert 'x-nubes-cost-usd' in r.headers, r.headers; "
            "print(json.dumps(sorted(sys.modules)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    heavy = [m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert heavy == []
    assert {"nubes.adapters.gcp.prices", "nubes.adapters.azure.prices"} <= set(loaded)  # every cloud was priced


def test_public_api() -> None:
    import nubes

    for name in ("App", "Context", "Request", "Response", "HTTPError", "errors"):
        assert hasattr(nubes, name)
    assert issubclass(nubes.errors.NotFound, FileNotFoundError)
