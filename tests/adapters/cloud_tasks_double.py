"""A loopback double of Cloud Tasks' REST API (CreateTask) that dispatches HTTP tasks.

No Cloud Tasks emulator can be installed beside this project: Google ships none, and the one on
PyPI (gcloud-tasks-emulator) requires protobuf < 5, which the project's Google clients exclude. So
this double checks every CreateTask body against the API's published description (the discovery
document shipped with google-api-python-client: unknown fields, enum values, durations, base64
bodies are refused with 400 as the service would), then delivers each task the way Cloud Tasks
does: an HTTP request to ``httpRequest.url`` with the task's method, headers and body plus the
``X-CloudTasks-*`` headers, retried on any non-2xx answer with a doubling backoff until
``max_attempts`` (the queue's ``retryConfig.maxAttempts``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import googleapiclient
from tests.deploy.gcp_double import check as check_schema

DISCOVERY = json.loads((Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / "cloudtasks.v2.json")
                       .read_text(encoding="utf-8"))
SCHEMAS = DISCOVERY["schemas"]
_CREATE = re.compile(r"^/v2/(projects/[^/]+/locations/[^/]+/queues/[^/]+)/tasks$")
_DURATION = re.compile(r"^\d+(\.\d{1,9})?s$")


def check(value: Any, schema: dict[str, Any], where: str, ints: bool) -> list[str]:
    """Problems of ``value`` against a discovery ``schema``: the deploy doubles' checker (fields, types,
    enums), plus the formats a task carries (durations, base64 bodies)."""
    problems = check_schema(value, schema, SCHEMAS, where, ints)
    task = value.get("task") if isinstance(value, dict) else None
    if isinstance(task, dict):
        deadline = task.get("dispatchDeadline")
        if deadline is not None and not (isinstance(deadline, str) and _DURATION.match(deadline)):
            problems.append(f"{where}.task.dispatchDeadline: {deadline!r} is not a duration such as '3.5s'")
        body = (task.get("httpRequest") or {}).get("body")
        if isinstance(body, str):
            try:
                base64.b64decode(body.replace("-", "+").replace("_", "/"), validate=True)
            except (binascii.Error, ValueError):
                problems.append(f"{where}.task.httpRequest.body: not base64")
    return problems


class CloudTasksDouble:
    """``with CloudTasksDouble(max_attempts=3) as tasks:`` — ``tasks.endpoint``, ``tasks.created``,
    ``tasks.attempts`` (``(task name, url, status)`` per delivery)."""

    def __init__(self, *, max_attempts: int = 3, min_backoff: float = 0.1) -> None:
        self.max_attempts, self.min_backoff = max_attempts, min_backoff
        self.created: list[dict[str, Any]] = []
        self.attempts: list[tuple[str, str, int]] = []
        self.refused: list[list[str]] = []
        self._threads: list[threading.Thread] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                match = _CREATE.match(url.path)
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if match is None:
                    return self._answer(404, {"error": {"code": 404, "message": f"no method at {url.path}"}})
                ints = "int" in parse_qs(url.query).get("$alt", [""])[0]
                try:
                    request = json.loads(body)
                except ValueError:
                    return self._answer(400, {"error": {"code": 400, "message": "body is not JSON"}})
                problems = check(request, {"$ref": "CreateTaskRequest"}, "CreateTaskRequest", ints)
                if not problems and not (request.get("task") or {}).get("httpRequest", {}).get("url"):
                    problems.append("task.httpRequest.url is required")
                if problems:
                    double.refused.append(problems)
                    return self._answer(400, {"error": {"code": 400, "message": "; ".join(problems), "status": "INVALID_ARGUMENT"}})
                task = dict(request["task"])
                task["name"] = f"{match[1]}/tasks/{len(double.created) + 1}"
                double.created.append(task)
                thread = threading.Thread(target=double._deliver, args=(match[1], task), daemon=True)
                double._threads.append(thread)
                thread.start()
                self._answer(200, task)

            def _answer(self, status: int, doc: dict[str, Any]) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._serving = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _deliver(self, queue: str, task: dict[str, Any]) -> None:
        http = task["httpRequest"]
        body = base64.b64decode(http.get("body", "")) if http.get("body") else None
        for n in range(self.max_attempts):
            req = urllib.request.Request(http["url"], data=body, method="POST")
            for name, value in (http.get("headers") or {}).items():
                req.add_header(name, value)
            for name, value in {"X-CloudTasks-QueueName": queue.rsplit("/", 1)[1], "X-CloudTasks-TaskName": task["name"].rsplit("/", 1)[1],
                                "X-CloudTasks-TaskRetryCount": str(n), "X-CloudTasks-TaskExecutionCount": str(n)}.items():
                req.add_header(name, value)
            try:
                with urllib.request.urlopen(req, timeout=120) as resp:
                    status = resp.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            self.attempts.append((task["name"], http["url"], status))
            if 200 <= status < 300:
                return
            time.sleep(self.min_backoff * 2**n)

    def wait(self, timeout: float = 30.0) -> None:
        """Until every task created so far has been delivered (or given up)."""
        end = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, end - time.monotonic()))

    def __enter__(self) -> CloudTasksDouble:
        self._serving.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
