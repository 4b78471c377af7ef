"""Azure Functions under emulation: the Functions host's limits and answers, the payloads, and the
worker side (:class:`AzureTarget`: ``function_app(app)`` indexed once, its functions called with
``func.HttpRequest`` / ``InputStream`` / ``QueueMessage`` / ``TimerRequest`` built as the Python
worker builds them)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from nubes.adapters.azure.limits import FIGURES
from nubes.adapters.emulator.profile import Answer, EventResult, Frame, Profile, default_bucket, error_frame, http_meta
from nubes.core.app import App
from nubes.core.request import Request
from nubes.core.response import Response

# Body over maxRequestBodySize -> 413 (Kestrel, empty body); a function that fails or exceeds
# functionTimeout -> 500 from the host; an HTTP call still running at 230 s -> the front end's 502
# ("the Azure Load Balancer will time out and return an HTTP 502 error",
# learn.microsoft.com/azure/azure-functions/functions-bindings-http-webhook-trigger#limits;
# some report 500, MicrosoftDocs/azure-docs#94418 — nubes follows the documentation).
ANSWERS: dict[tuple[str, str], Answer] = {
    ("azure", "request_too_large"): Answer(413, b"", None, "learn.microsoft.com/azure/azure-functions/functions-scale#service-limits"),
    ("azure", "function_error"): Answer(
        500, b"", None, "github.com/Azure/azure-functions-host (FunctionTimeoutException / unhandled -> 500)"
    ),
    ("azure", "gateway_timeout"): Answer(
        502,
        b"The specified CGI application encountered an error and the server terminated the process.",
        "text/html",
        "learn.microsoft.com/azure/azure-functions/functions-bindings-http-webhook-trigger#limits",
    ),
}


class AzureProfile(Profile):
    """Azure Functions (Consumption): the FunctionApp's HTTP function behind the Functions host.

    A job's failed queue message is visible again after host.json ``visibilityTimeout``, by default
    00:00:00 (learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue#host-json):
    the base :meth:`~Profile.job_retry_delays`, retries at once."""

    name = "azure"
    figures = FIGURES
    answers = ANSWERS

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.gateway_timeout = self.figure("http_timeout_s")

    def encode(self, request: Request, request_id: str) -> Frame | Response:
        if len(request.body) > self.max_body:
            return self.answer("request_too_large")
        return http_meta(request, request_id, "azure-http"), request.body

    def decode(self, meta: Mapping[str, Any], body: bytes) -> tuple[Response, str | None]:
        if not meta.get("ok"):
            return self.answer("function_error"), str(meta.get("error_type") or "crash")
        return Response(body, int(meta["status"]), [tuple(h) for h in meta["headers"]]), None

    def worker_env(self) -> dict[str, str]:
        return {"NUBES_MEMORY_MB": str(self.settings.memory)}

    def event_payload(self, kind: str, arg: str, *, request_id: str, bucket: str | None, size: int,
                      queue: str | None, home: str) -> Frame:
        if kind == "object-created":
            container = bucket or default_bucket(home, "az://")
            return {"op": "azure-event", "request_id": request_id, "trigger": "blob", "key": f"{container}/{arg}", "size": size}, b""
        if kind == "message":
            return {"op": "azure-event", "request_id": request_id, "trigger": "queue", "key": queue or "nubes-queue"}, arg.encode("utf-8")
        return {"op": "azure-event", "request_id": request_id, "trigger": "timer", "key": arg}, b""

    def job_payload(self, app: Any, job_id: str, token: str, request_id: str) -> Frame:
        """The job's message on the app's jobs queue, for the queue-triggered ``nubes_jobs``."""
        from nubes.adapters.azure.jobs import jobs_queue
        from nubes.core.job_runs import delivery

        return ({"op": "azure-event", "request_id": request_id, "trigger": "queue", "key": jobs_queue(app)},
                json.dumps(delivery(job_id, token)).encode())

    def event_result(self, meta: Mapping[str, Any], body: bytes) -> EventResult:
        if not meta.get("ok"):
            return super().event_result(meta, body)
        return EventResult(True, {"function": meta.get("function")})


class AzureTarget:
    """The worker side: the indexed FunctionApp, its functions called as the Python worker calls them."""

    def __init__(self, app: App, settings: Mapping[str, Any]) -> None:
        from nubes.adapters.azure.functions import function_app

        self.settings = settings
        fa = function_app(app, timeout=float(settings["timeout"]),
                          memory_mb=int(settings["memory"]) if settings.get("memory") else None)
        self.functions: dict[str, Any] = {str(f.get_function_name()): f for f in fa.get_functions()}

    def _trigger(self, name: str) -> dict[str, Any]:
        bindings = json.loads(self.functions[name].get_function_json())["bindings"]
        trigger: dict[str, Any] = next(b for b in bindings if b.get("direction") == "IN")
        return trigger

    def find(self, kind: str, key: str) -> str | None:
        """The function bound to a blob container / queue / timer schedule, as the host would pick it."""
        from nubes.adapters.azure.functions import _Names

        for name in self.functions:
            trigger = self._trigger(name)
            if kind == "blob" and trigger.get("type") == "blobTrigger":
                container, _, prefix = str(trigger["path"]).partition("/")
                literal = prefix.split("{", 1)[0]
                blob_container, _, blob = key.partition("/")
                if container == blob_container and blob.startswith(literal):
                    return name
            if kind == "queue" and trigger.get("type") == "queueTrigger" and trigger.get("queueName") == key:
                return name
        if kind == "timer":
            wanted = _Names().take(f"timer_{key}")
            if wanted in self.functions:
                return wanted
        return None

    def invoke(self, meta: dict[str, Any], body: bytes) -> Frame:
        from nubes.adapters.azure import builders as ev
        from nubes.adapters.azure.functions import HTTP_FUNCTION

        context = ev.invocation_context(meta.get("request_id"))
        try:
            if meta["op"] == "azure-http":
                request = Request(meta["method"], meta["raw_path"], query=meta["query"],
                                  headers=[tuple(h) for h in meta["headers"]], body=body, scheme=meta.get("scheme") or "https")
                host = request.headers.get("host") or "localhost:7071"
                fn = self.functions[HTTP_FUNCTION].get_user_function()
                resp = ev.from_http_response(fn(ev.to_http_request(request, base_url=f"{request.scheme}://{host}"), context))
                return {"ok": True, "status": resp.status, "headers": resp.headers.multi_items()}, resp.body
            kind, key = meta["trigger"], meta["key"]
            name = self.find(kind, key)
            if name is None:
                return {"ok": False, "error_type": "NoFunction",
                        "error": {"errorMessage": f"no function of this app is bound to {kind} {key!r}"}}, b""
            fn = self.functions[name].get_user_function()
            if kind == "blob":
                container, _, blob = key.partition("/")
                fn(ev.blob_input_stream(container, blob, b"\0" * int(meta.get("size") or 0)), context)
            elif kind == "queue":
                fn(ev.queue_message(body, id=meta.get("message_id")), context)
            else:
                fn(ev.timer_request(next=datetime.now(UTC)), context)
            return {"ok": True, "function": name}, b""
        except Exception as exc:  # the host reports a failed function
            return error_frame(exc, meta.get("request_id"))
