"""The problems an adapter answers itself (no request it could read, or a limit it enforces) have one
shape on every cloud: type, title, status, detail and request_id (also in x-nubes-request-id), and
no ``instance`` made up from a request that does not exist."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import flask
import pytest
from tests.adapters.test_azure_support import Indexed

import nubes
from nubes.adapters.aws import handler
from nubes.adapters.aws.builders import LambdaContext, http_api_event
from nubes.adapters.azure.builders import from_http_response, invocation_context
from nubes.adapters.azure.functions import HTTP_FUNCTION, function_app
from nubes.adapters.gcp import functions as gcp
from nubes.core.request import Request

KEYS = {"type", "title", "status", "detail", "request_id"}


def make_app() -> nubes.App:
    app = nubes.App("problems", auth=False, openapi=False)
    app.post("/x")(lambda ctx: {})
    return app


def aws_problem() -> tuple[int, dict[str, Any], str]:
    event = http_api_event(Request("POST", "/x"))
    event["requestContext"]["http"]["method"] = "NOT A METHOD"
    result = handler(make_app())(event, LambdaContext())
    return result["statusCode"], json.loads(result["body"]), result["headers"]["x-nubes-request-id"]


def azure_problem() -> tuple[int, dict[str, Any], str]:
    req = func.HttpRequest(None, "https://h/x", body=b"")  # type: ignore[arg-type]
    resp = from_http_response(Indexed(function_app(make_app()))[HTTP_FUNCTION](req, invocation_context()))
    return resp.status, json.loads(resp.body), resp.headers["x-nubes-request-id"]


def gcp_problem(monkeypatch: pytest.MonkeyPatch) -> tuple[int, dict[str, Any], str]:
    monkeypatch.setattr(gcp, "MAX_REQUEST_BYTES", 4)
    with flask.Flask("problems").test_request_context("/x", method="POST", data=b"0123456789"):
        resp = gcp.http_function(make_app())(flask.request)
    return resp.status_code, json.loads(resp.get_data()), resp.headers["x-nubes-request-id"]


def test_adapter_problems_have_one_shape_on_every_cloud(monkeypatch: pytest.MonkeyPatch) -> None:
    for status, body, header in (aws_problem(), azure_problem(), gcp_problem(monkeypatch)):
        assert status in (400, 413) and body["status"] == status
        assert set(body) == KEYS, body
        assert body["request_id"] == header and len(header) >= 1
