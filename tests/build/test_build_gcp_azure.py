"""The Google and Azure artifacts, each alone in a fresh environment of the target Python: the GCP
source zip installs its pinned requirements.txt from a local wheelhouse (no index) and is served by
the real functions-framework for both targets; the Azure package is indexed as the worker does and
each function called with real azure.functions objects."""

from __future__ import annotations

import json
import subprocess
import urllib.request
import zipfile
from pathlib import Path

import pytest
from tests.build.conftest import fresh_venv

from nubes.deploy.build import BuildResult
from nubes.testing.servers.process import free_port, port_open, wait_until

ISOLATED_ENV = {"PATH": "/usr/bin:/bin", "NUBES_METERING": "off", "HOME": "/tmp"}


def _unzip(archive: str, dest: Path) -> Path:
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(dest)
    return dest


def test_gcp_zip_holds_main_requirements_and_the_app(gcp_build: BuildResult) -> None:
    m = gcp_build.manifest
    assert (m["cloud"], m["format"], m["vendored"], m["targets"]) == ("gcp", "zip", False, {"http": "main", "events": "events"})
    with zipfile.ZipFile(m["path"]) as zf:
        names = set(zf.namelist())
        requirements = zf.read("requirements.txt").decode().splitlines()
        main = zf.read("main.py").decode()
    assert {"main.py", "requirements.txt", "shop.py", "nubes/__init__.py"} <= names
    assert not any(n.endswith((".so", ".dist-info/METADATA")) for n in names)  # the buildpack installs the packages
    pins = [line for line in requirements if line and not line.startswith("#")]
    assert pins and all("==" in line for line in pins)
    assert {p.split("==")[0].lower() for p in pins} >= {"functions-framework", "google-cloud-storage", "jinja2", "idna"}
    assert not {p.split("==")[0].lower() for p in pins} & {"typer", "rich", "pydantic", "duckdb", "polars"}
    assert "main = http_function(app)" in main and "events = cloud_event_function(app)" in main


def test_gcp_zip_serves_both_targets_from_a_fresh_venv(gcp_build: BuildResult, tmp_path: Path, target_python: str,
                                                      wheelhouse: Path) -> None:
    source = _unzip(gcp_build.manifest["path"], tmp_path / "workspace")
    python = fresh_venv(target_python, tmp_path / "venv", wheelhouse, ["-r", str(source / "requirements.txt")])
    framework = str(python.parent / "functions-framework")

    def serve(target: str, signature: str) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        proc = subprocess.Popen([framework, "--target", target, "--signature-type", signature, "--source", "main.py",
                                 "--port", str(port), "--host", "127.0.0.1"], cwd=source, env=ISOLATED_ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        wait_until(lambda: port_open(port), timeout=60, what="functions-framework")
        return proc, port

    http, port = serve("main", "http")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello/gcp?times=2", timeout=30) as resp:
            body = json.loads(resp.read())
        assert body == {"greeting": "hello gcp hello gcp", "query": [["times", "2"]]}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/template?who=cloud%20build", timeout=30) as resp:
            assert json.loads(resp.read()) == {"text": "hi cloud build"}
    finally:
        http.terminate()
        http.wait(timeout=10)
    events, port = serve("events", "cloudevent")
    try:
        for key, status in (("incoming/a.csv", 200), ("fail/b.csv", 500)):
            ce = {"specversion": "1.0", "type": "google.cloud.storage.object.v1.finalized", "source":
                  "//storage.googleapis.com/projects/_/buckets/nubes-build-test", "id": key, "subject": f"objects/{key}",
                  "time": "2026-01-01T00:00:00Z", "datacontenttype": "application/json",
                  "data": {"bucket": "nubes-build-test", "name": key, "size": "3", "generation": "1", "metageneration": "1",
                           "timeCreated": "2026-01-01T00:00:00Z", "updated": "2026-01-01T00:00:00Z"}}
            request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=json.dumps(ce).encode(), method="POST",
                                             headers={"Content-Type": "application/cloudevents+json"})
            try:
                with urllib.request.urlopen(request, timeout=30) as resp:
                    got = resp.status
            except urllib.error.HTTPError as exc:
                got = exc.code
            assert got == status, key
    finally:
        events.terminate()
        events.wait(timeout=10)


_AZURE_PROBE = r"""
import json, sys
root = sys.argv[1]
sys.path[:0] = [root, root + "/.python_packages/lib/site-packages"]
import function_app
import azure.functions as func
from nubes.adapters.azure import builders as ev
from nubes.core.request import Request
functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
out = {"functions": sorted(functions), "azure_functions": func.__file__}
http = functions["nubes_http"].get_user_function()
resp = http(ev.to_http_request(Request("GET", "/hello/azure", query="times=2")), ev.invocation_context())
out["http"] = [resp.status_code, json.loads(resp.get_body())]
resp = http(ev.to_http_request(Request("GET", "/_nubes/costs")), ev.invocation_context())
out["excluded"] = resp.status_code
queue = next(f for name, f in functions.items() if name.startswith("queue"))
out["queue"] = [queue.get_function_name(), json.loads(queue.get_function_json())["bindings"][0]["type"]]
timer = next(f for name, f in functions.items() if name.startswith("timer"))
timer.get_user_function()(ev.timer_request(), ev.invocation_context())
out["timer"] = timer.get_function_name()
print(json.dumps(out))
"""


def test_azure_package_indexes_and_answers_from_a_fresh_environment(azure_build: BuildResult, tmp_path: Path,
                                                                    target_python: str) -> None:
    m = azure_build.manifest
    assert (m["cloud"], m["entry"], m["site_packages"]) == ("azure", "function_app.py", ".python_packages/lib/site-packages")
    root = _unzip(m["path"], tmp_path / "wwwroot")
    host = json.loads((root / "host.json").read_text())
    assert host["extensions"]["http"]["routePrefix"] == "" and host["version"] == "2.0"
    assert (root / ".python_packages/lib/site-packages/azure/functions/__init__.pyc").exists()
    python = fresh_venv(target_python, tmp_path / "venv", tmp_path, [])
    proc = subprocess.run([str(python), "-I", "-c", _AZURE_PROBE, str(root)], capture_output=True, text=True, cwd=root,
                          env={**ISOLATED_ENV, "AzureWebJobsStorage": "UseDevelopmentStorage=true"}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["azure_functions"].startswith(str(root))  # the package's own azure.functions, nothing installed
    assert out["http"] == [200, {"greeting": "hello azure hello azure", "query": [["times", "2"]]}]
    assert out["excluded"] == 404  # [build] exclude removed it from the deployed app
    assert "nubes_http" in out["functions"] and out["queue"][1] == "queueTrigger" and out["timer"].startswith("timer")


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_image_format_is_refused_where_the_cloud_deploys_zips(cloud: str, tmp_path: Path) -> None:
    from tests.build.conftest import APP

    from nubes.deploy.build import BuildError, BuildOptions, build

    with pytest.raises(BuildError, match=r"--format image: .* takes zip"):
        build(BuildOptions(APP, cloud, out=tmp_path, format="image", storage="s3://b/p"))
