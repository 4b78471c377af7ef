"""The worker side: the app wrapped by its provider's adapter exactly as deployed, called with
the provider's own payload.

* AWS: ``nubes.adapters.aws.handler(app)`` called with the event dict and a Lambda context; the
  result (or the error, as the Python runtime reports it) goes back as JSON.
* GCP: the functions-framework Flask app (``functions_framework.create_app``) serving
  ``http_function(app)`` / ``cloud_event_function(app)`` from a generated ``main.py``, called
  through its WSGI test client with the HTTP request / structured CloudEvent.
* Azure: ``function_app(app)`` indexed once; its functions called with ``func.HttpRequest`` /
  ``InputStream`` / ``QueueMessage`` / ``TimerRequest`` built as the Python worker builds them.

Each target's ``invoke(meta, body) -> (meta, body)`` is what a worker process runs per invocation;
:class:`~nubes.adapters.emulator.runtime.Emulator` also calls it in-process.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import traceback
from datetime import UTC
from pathlib import Path
from typing import Any

from nubes.core.app import App
from nubes.core.request import Request

Frame = tuple[dict[str, Any], bytes]

_APP: App | None = None
_MEMORY: list[int | None] = [None]  # the emulated function's memory (MB), for the generated main.py


def current_app() -> App:
    """The app the emulator is serving (the generated GCP ``main.py`` imports it)."""
    if _APP is None:
        raise RuntimeError("no app is being emulated in this process")
    return _APP


def current_memory() -> int | None:
    """The memory (MB) the emulator gives the function, passed to the GCP adapter like the platform would."""
    return _MEMORY[0]


def _error(exc: BaseException, request_id: str | None = None) -> Frame:
    # as awslambdaric's build_fault_result: the request id, and the stack from the first frame that is not the runtime's own
    frames = traceback.extract_tb(exc.__traceback__)
    while frames and frames[0].filename.endswith(("emulator/targets.py", "emulator\\targets.py")):
        frames = traceback.StackSummary.from_list(frames[1:])
    error = {"errorMessage": str(exc), "errorType": type(exc).__name__, "requestId": request_id or "",
             "stackTrace": traceback.format_list(frames)}
    return {"ok": False, "error_type": type(exc).__name__, "error": error}, json.dumps(error).encode()


class AwsTarget:
    def __init__(self, app: App, settings: dict[str, Any]) -> None:
        from nubes.adapters.aws import handler

        self.settings = settings
        self.handler = handler(app)
        # Lambda always runs on an architecture; nubes reads it from here (the emulated machine's)
        os.environ.setdefault("NUBES_ARCHITECTURE", {"aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower(), "x86_64"))

    def invoke(self, meta: dict[str, Any], body: bytes) -> Frame:
        from nubes.adapters.aws.builders import LambdaContext

        context = LambdaContext(self.settings["function_name"], int(self.settings["memory"]),
                                float(meta.get("remaining", self.settings["timeout"])), meta.get("request_id"))
        try:
            result = self.handler(json.loads(body), context)
            data = json.dumps(result, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        except Exception as exc:  # noqa: BLE001 - the Lambda runtime reports it as a function error
            return _error(exc, context.aws_request_id)
        return {"ok": True}, data


_GCP_MAIN = '''"""Written by the nubes emulator: the deployment's main.py."""
from nubes.adapters.emulator.targets import current_app, current_memory
from nubes.adapters.gcp.functions import cloud_event_function, http_function

main = http_function(current_app(), memory_mb=current_memory())
on_event = cloud_event_function(current_app(), memory_mb=current_memory())
'''


class GcpTarget:
    def __init__(self, app: App, settings: dict[str, Any]) -> None:
        global _APP
        import functions_framework

        _APP = app
        _MEMORY[0] = int(settings["memory"]) if settings.get("memory") else None
        self.settings = settings
        self._dir = tempfile.TemporaryDirectory(prefix="nubes-gcf-")
        source = Path(self._dir.name) / "main.py"
        source.write_text(_GCP_MAIN, encoding="utf-8")
        self.http = functions_framework.create_app("main", str(source), "http").test_client()
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
        except Exception as exc:  # noqa: BLE001 - the framework failed: the instance's error answer
            return _error(exc)
        return {"ok": True, "status": resp.status_code, "headers": list(resp.headers.items())}, resp.get_data()

    def _event(self, meta: dict[str, Any], body: bytes) -> Frame:
        import functions_framework

        if self._events is None:
            self._events = functions_framework.create_app("on_event", self._source, "cloudevent").test_client()
        resp = self._events.post("/", headers=meta["headers"], data=body)
        ok = 200 <= resp.status_code < 300
        out: dict[str, Any] = {"ok": ok, "status": resp.status_code}
        if not ok:
            out["error_type"] = "FunctionError"
        return out, resp.get_data()


class AzureTarget:
    def __init__(self, app: App, settings: dict[str, Any]) -> None:
        from nubes.adapters.azure.functions import function_app

        self.settings = settings
        fa = function_app(app, timeout=float(settings["timeout"]),
                          memory_mb=int(settings["memory"]) if settings.get("memory") else None)
        self.functions = {f.get_function_name(): f for f in fa.get_functions()}

    def _trigger(self, name: str) -> dict[str, Any]:
        bindings = json.loads(self.functions[name].get_function_json())["bindings"]
        return next(b for b in bindings if b.get("direction") == "IN")

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
        from nubes.adapters.azure.functions import HTTP_FUNCTION
        from nubes.adapters.azure import builders as ev

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
                from datetime import datetime

                fn(ev.timer_request(next=datetime.now(UTC)), context)
            return {"ok": True, "function": name}, b""
        except Exception as exc:  # noqa: BLE001 - the host reports a failed function
            return _error(exc)


TARGETS = {"aws": AwsTarget, "gcp": GcpTarget, "azure": AzureTarget}


def make_target(provider: str, app: App, settings: dict[str, Any]) -> Any:
    return TARGETS[provider](app, settings)
