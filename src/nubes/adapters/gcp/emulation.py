"""Cloud Functions (2nd gen) under emulation: Google's front end, the payloads, and the worker side.

:class:`GcpProfile` is the functions-framework HTTP target behind Google's front end;
:class:`GcpTarget` is the functions-framework Flask app serving ``http_function(app)`` /
``cloud_event_function(app)`` from a generated ``main.py``, called through its WSGI test client with
the HTTP request or the structured CloudEvent.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nubes.adapters.emulator.profile import Answer, Frame, Profile, default_bucket, error_frame, http_meta
from nubes.adapters.gcp.limits import FIGURES
from nubes.core.app import App
from nubes.core.request import Request
from nubes.core.response import Response

# Cloud Functions 2nd gen runs on Cloud Run: over-size request 413 from Google's front end;
# request timeout 504 "upstream request timeout"; an instance that dies mid-request (crash,
# memory limit exceeded) 503 (cloud.google.com/run/docs/troubleshooting: "The request failed
# because either the HTTP response was malformed or connection to the instance had an error").
ANSWERS: dict[tuple[str, str], Answer] = {
    ("gcp", "request_too_large"): Answer(
        413,
        b"<!DOCTYPE html>\n<title>Error 413 (Request Entity Too Large)!!1</title>\n"
        b"<p><b>413.</b> That\xe2\x80\x99s an error.\n<p>Your client issued a request that was too large.\n",
        "text/html; charset=UTF-8",
        "cloud.google.com/functions/quotas (32 MiB)",
    ),
    ("gcp", "response_too_large"): Answer(500, b"Internal Server Error", "text/plain", "cloud.google.com/functions/quotas (32 MiB)"),
    ("gcp", "function_error"): Answer(503, b"Service Unavailable", "text/plain",
                                      "cloud.google.com/run/docs/troubleshooting#503-malformed-or-connection-error"),
    ("gcp", "function_timeout"): Answer(504, b"upstream request timeout", "text/plain",
                                        "cloud.google.com/run/docs/troubleshooting#504-deadline-exceeded"),
}


class GcpProfile(Profile):
    """Cloud Functions 2nd gen: the functions-framework HTTP target behind Google's front end."""

    name = "gcp"
    figures = FIGURES
    answers = ANSWERS

    def encode(self, request: Request, request_id: str) -> Frame | Response:
        if len(request.body) > self.max_body:
            return self.answer("request_too_large")
        return http_meta(request, request_id, "gcp-http"), request.body

    def decode(self, meta: Mapping[str, Any], body: bytes) -> tuple[Response, str | None]:
        if not meta.get("ok"):
            return self.answer("function_error"), str(meta.get("error_type") or "crash")
        if len(body) > self.figure("response_bytes"):
            return self.answer("response_too_large"), "ResponseTooLarge"
        return Response(body, int(meta["status"]), [tuple(h) for h in meta["headers"]]), None

    def worker_env(self) -> dict[str, str]:
        return {"FUNCTION_TARGET": "main", "FUNCTION_SIGNATURE_TYPE": "http",
                "FUNCTION_TIMEOUT_SEC": f"{self.settings.timeout:g}", "FUNCTION_MEMORY_MB": str(self.settings.memory)}

    def event_payload(self, kind: str, arg: str, *, request_id: str, bucket: str | None, size: int,
                      queue: str | None, home: str) -> Frame:
        from cloudevents.conversion import to_structured

        from nubes.adapters.gcp import builders as ev

        if kind == "object-created":
            ce = ev.storage_finalized_event(bucket or default_bucket(home, "gs://"), arg, size)
        elif kind == "message":
            ce = ev.pubsub_event(arg, topic=queue or "nubes-topic")
        else:
            ce = ev.scheduler_event(arg)
        headers, data = to_structured(ce)
        return {"op": "gcp-event", "request_id": request_id, "headers": dict(headers)}, data


    def job_retry_delays(self, attempts: int) -> list[float]:
        """Cloud Tasks' backoff: from ``minBackoff`` (0.1 s), doubling."""
        return [self.figure("tasks.min_backoff_s") * 2**n for n in range(max(0, attempts - 1))]

    def job_payload(self, app: Any, job_id: str, token: str, request_id: str) -> Frame:
        """The HTTP request Cloud Tasks sends to the function for the job's task."""
        import json

        from nubes.core.job_runs import RUN_PATH, delivery

        body = json.dumps(delivery(job_id, token)).encode()
        headers = [("host", "localhost"), ("content-type", "application/json"), ("content-length", str(len(body))),
                   ("user-agent", "Google-Cloud-Tasks"), ("x-cloudtasks-queuename", "nubes-jobs"),
                   ("x-cloudtasks-taskname", request_id.replace("-", "")), ("function-execution-id", request_id)]
        meta = {"op": "gcp-http", "request_id": request_id, "method": "POST", "raw_path": RUN_PATH.format(job_id=job_id),
                "query": "", "headers": headers, "scheme": "https"}
        return meta, body


_APP: list[App] = []
_MEMORY: list[int | None] = [None]  # the emulated function's memory (MB), for the generated main.py

_MAIN = '''"""Written by the nubes emulator: the deployment's main.py."""
from nubes.adapters.gcp.emulation import current_app, current_memory
from nubes.adapters.gcp import cloud_event_function, http_function

main = http_function(current_app(), memory_mb=current_memory())
on_event = cloud_event_function(current_app(), memory_mb=current_memory())
'''


def current_app() -> App:
    """The app the emulator is serving (the generated ``main.py`` imports it)."""
    if not _APP:
        raise RuntimeError("no app is being emulated in this process")
    return _APP[-1]


def current_memory() -> int | None:
    """The memory (MB) the emulator gives the function, passed to the adapter like the platform would."""
    return _MEMORY[0]


class GcpTarget:
    """The worker side: functions-framework's own Flask app for the generated ``main.py``."""

    def __init__(self, app: App, settings: Mapping[str, Any]) -> None:
        import functions_framework

        _APP.append(app)
        _MEMORY[0] = int(settings["memory"]) if settings.get("memory") else None
        self.settings = settings
        self._dir = tempfile.TemporaryDirectory(prefix="nubes-gcf-")
        source = Path(self._dir.name) / "main.py"
        source.write_text(_MAIN, encoding="utf-8")
        self.http = _create_app(functions_framework)("main", str(source), "http").test_client()
        self._source = str(source)
        self._events: Any = None

    def invoke(self, meta: dict[str, Any], body: bytes) -> Frame:
        if meta["op"] == "gcp-event":
            return self._event(meta, body)
        headers = [(k, v) for k, v in meta["headers"] if k.lower() != "host"]
        host = next((v for k, v in meta["headers"] if k.lower() == "host"), "localhost")
        try:
            resp = self.http.open(meta["raw_path"], method=meta["method"], headers=headers, data=body,
                                  query_string=meta["query"], base_url=f"{meta.get('scheme') or 'http'}://{host}")
        except Exception as exc:  # the framework failed: the instance's error answer
            return error_frame(exc, meta.get("request_id"))
        return {"ok": True, "status": resp.status_code, "headers": list(resp.headers.items())}, resp.get_data()

    def _event(self, meta: dict[str, Any], body: bytes) -> Frame:
        import functions_framework

        if self._events is None:
            self._events = _create_app(functions_framework)("on_event", self._source, "cloudevent").test_client()
        resp = self._events.post("/", headers=meta["headers"], data=body)
        ok = 200 <= resp.status_code < 300
        out: dict[str, Any] = {"ok": ok, "status": resp.status_code}
        if not ok:
            out["error_type"] = "FunctionError"
        return out, resp.get_data()


def _create_app(module: Any) -> Any:
    """``functions_framework.create_app`` (the package ships no type hints)."""
    return module.create_app
