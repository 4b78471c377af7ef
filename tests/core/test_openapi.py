"""GET /_nubes/openapi.json describes the app's routes as a valid OpenAPI 3.1 document."""

from __future__ import annotations

from openapi_spec_validator import validate

import nubes
from nubes.testing import Client


def test_openapi_document_is_valid_and_derived_from_annotations(client: Client) -> None:
    r = client.get("/_nubes/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    validate(doc)
    assert doc["openapi"] == "3.1.0" and doc["info"]["title"] == "contract"
    hello = doc["paths"]["/hello/{name}"]["get"]
    assert hello["summary"] == "Greet someone." and "Repeats" in hello["description"]
    params = {p["name"]: p for p in hello["parameters"]}
    assert params["name"]["in"] == "path" and params["name"]["required"] is True
    assert params["times"]["schema"] == {"type": "integer", "default": 1}
    assert params["shout"]["schema"]["type"] == "boolean"
    types = {p["name"]: p["schema"] for p in doc["paths"]["/types"]["get"]["parameters"]}
    assert types["d"] == {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]}
    assert types["color"]["enum"] == ["red", "blue"] and types["mode"]["enum"] == ["fast", "slow"]
    assert types["ids"] == {"type": "array", "items": {"type": "integer"}}
    order = doc["paths"]["/orders"]["post"]
    assert order["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Order"}
    schema = doc["components"]["schemas"]["Order"]
    assert schema["required"] == ["item", "qty"] and schema["properties"]["qty"] == {"type": "integer"}
    assert "422" in order["responses"] and "/files/{path}" in doc["paths"]
    assert set(doc["paths"]["/multi"]) == {"get", "post"}
    builtin = {p for p in doc["paths"] if p.startswith("/_nubes/")}
    assert "/_nubes/openapi.json" in builtin and "/_nubes/jobs/{job_id}" not in builtin  # no jobs: no job routes
    assert all(op["tags"] == ["nubes"] for p in builtin for op in doc["paths"][p].values())


def test_table_routes_advertise_their_formats(client: Client) -> None:
    doc = client.get("/_nubes/openapi.json").json()
    # /sales has no return annotation, so it is described generically; a typed route lists formats
    assert "application/json" in doc["paths"]["/sales"]["get"]["responses"]["200"]["content"]


def test_openapi_can_be_disabled() -> None:
    import nubes

    assert Client(nubes.App("x", openapi=False)).get("/_nubes/openapi.json").status_code == 404


def test_jobs_built_in_routes_and_event_handlers_are_listed() -> None:
    app = nubes.App("listed", auth=False, models=False)

    @app.job("/train")
    def train(ctx: nubes.Context, rows: int = 10) -> dict:
        """Train a model."""
        return {}

    @app.on_object_created("raw/", source="landing")
    def landed(ctx: nubes.Context, event: nubes.ObjectCreated) -> None:
        """Load a landed file."""

    @app.on_message("orders")
    def order(ctx: nubes.Context, message: nubes.Message) -> None:
        pass

    doc = Client(app).get("/_nubes/openapi.json").json()
    validate(doc)
    op = doc["paths"]["/train"]["post"]
    assert set(op["responses"]) >= {"202", "422"} and "200" not in op["responses"]
    assert op["responses"]["202"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/NubesJob"}
    assert op["x-nubes-job"]["status"] == "/_nubes/jobs/{job_id}"
    assert "Idempotency-Key" in {p["name"] for p in op["parameters"]}
    assert doc["components"]["schemas"]["NubesJob"]["properties"]["status"]["enum"][0] == "queued"
    assert {"/_nubes/jobs/{job_id}", "/_nubes/jobs/{job_id}/result", "/_nubes/catalog"} <= set(doc["paths"])
    assert "/_nubes/models" not in doc["paths"]  # disabled built-ins are not listed
    assert set(doc["paths"]["/_nubes/jobs/{job_id}"]) == {"get", "delete"}
    events = {e["handler"].rsplit(".", 1)[1]: e for e in doc["x-nubes-events"]}
    assert events["landed"]["source"] == "landing" and events["landed"]["prefix"] == "raw/"
    assert events["landed"]["summary"] == "Load a landed file." and events["order"]["queue"] == "orders"
    assert set(events["landed"]["bindings"]) == {"aws", "gcp", "azure"}


def test_openapi_of_an_app_without_event_handlers_loads_no_cloud_adapter() -> None:
    import json
    import subprocess
    import sys

    code = ("import json, sys, nubes\n"
            "app = nubes.App('plain', auth=False, extensions=[])\n"
            "app.get('/x')(lambda ctx: {})\n"
            "doc = app.openapi()\n"
            "print(json.dumps([m for m in sys.modules if m.split('.')[:2] == ['nubes', 'adapters']]))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    assert loaded == []
