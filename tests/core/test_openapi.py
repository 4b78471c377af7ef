"""GET /_nubes/openapi.json describes the app's routes as a valid OpenAPI 3.1 document."""

from __future__ import annotations

from openapi_spec_validator import validate

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
    assert not any(p.startswith("/_nubes/") for p in doc["paths"])


def test_table_routes_advertise_their_formats(client: Client) -> None:
    doc = client.get("/_nubes/openapi.json").json()
    # /sales has no return annotation, so it is described generically; a typed route lists formats
    assert "application/json" in doc["paths"]["/sales"]["get"]["responses"]["200"]["content"]


def test_openapi_can_be_disabled() -> None:
    import nubes

    assert Client(nubes.App("x", openapi=False)).get("/_nubes/openapi.json").status_code == 404
