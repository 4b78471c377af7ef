"""What an emulated cloud is, as the emulator needs it: a :class:`Profile` per cloud.

Each cloud package subclasses :class:`Profile` (``nubes.adapters.<cloud>.emulation``) with its figures
and answers, each with its source, and the payload path:

* build the provider's own payload for a :class:`~nubes.Request` (:meth:`Profile.encode`), or the
  answer its front end gives when the payload is over a limit;
* turn what the deployed adapter returned back into the HTTP answer the caller gets
  (:meth:`Profile.decode`), again checking the response limit;
* answer a failed invocation (handler overran its timeout, ran out of memory, the worker died)
  the provider's way (:meth:`Profile.failure`);
* build event payloads (:meth:`Profile.event_payload`) and read what the adapter answered to them
  (:meth:`Profile.event_result`).

Payloads cross the worker-process boundary as ``(meta, body)``: a small JSON header and raw bytes
(AWS: the event JSON as Lambda delivers it; GCP and Azure: the HTTP request the function host
receives).
"""

from __future__ import annotations

import json
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from nubes.adapters.base import Figure
from nubes.core.request import Request
from nubes.core.response import Response
from nubes.errors import ConfigError

MB = 1024 * 1024
Frame = tuple[dict[str, Any], bytes]
EVENT_KINDS = ("object-created", "message", "schedule")


@dataclass(frozen=True)
class Answer:
    """A canned answer of a provider's front end: status, body, content type, and why."""

    status: int
    body: bytes
    content_type: str | None
    source: str

    def response(self) -> Response:
        headers = [("content-type", self.content_type)] if self.content_type else []
        return Response(self.body, self.status, headers)


@dataclass
class Settings:
    """The function's configuration as deployed: timeout (s), memory (MB), name, HTTP front end."""

    timeout: float
    memory: int
    function_name: str = "nubes-app"
    front: str = ""
    request_limit: int | None = None  # override the front end's request limit (tests, smaller hosts)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"timeout": self.timeout, "memory": self.memory, "function_name": self.function_name, "front": self.front}


@dataclass
class EventResult:
    """What firing an event returned: ``ok``, the adapter's ``output`` (e.g. ``batchItemFailures``)."""

    ok: bool
    output: Any = None
    error_type: str | None = None
    cold_start: bool = False
    details: dict[str, Any] = field(default_factory=dict)


class Profile:
    """One cloud's front end and function runtime, as far as the emulator needs them.

    Subclasses set ``name``, ``figures`` (the cloud's limits table) and ``answers`` (situation →
    :class:`Answer`, per front end ``key``) and implement the payload path.
    Situations: request_too_large, response_too_large, function_error (the function failed: unhandled
    error, out of memory, its own timeout, the process died), gateway_timeout (the front end stopped
    waiting before the function's timeout), function_timeout (where it differs from function_error).
    """

    name: ClassVar[str]
    figures: ClassVar[Mapping[str, Figure]]
    answers: ClassVar[Mapping[tuple[str, str], Answer]]
    fronts: ClassVar[tuple[str, ...]] = ("http",)  # how HTTP reaches the function; the first is the default
    key: str  # the answers' key for the configured front end
    gateway_timeout: float | None = None  # the front end stops waiting after this many seconds

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.key = self.name

    # -- configuration ----------------------------------------------------------------------------
    @classmethod
    def figure(cls, key: str) -> float:
        return cls.figures[key].value

    @classmethod
    def configure(cls, *, timeout: float | None = None, memory: int | None = None, function_name: str | None = None,
                  front: str | None = None, request_limit: int | None = None) -> Profile:
        """A profile with these settings (defaults from the figures); ConfigError names the allowed range."""
        timeout = float(timeout) if timeout is not None else cls.figure("default_timeout_s")
        memory = int(memory) if memory is not None else int(cls.figure("default_memory_mb"))
        max_timeout = cls.figure("timeout_max_s")
        min_memory, max_memory = int(cls.figure("memory_min_mb")), int(cls.figure("memory_max_mb"))
        if not 0 < timeout <= max_timeout:
            raise ConfigError(f"--timeout {timeout:g}: {cls.name} functions time out after 1 to {max_timeout:g} seconds")
        if not min_memory <= memory <= max_memory:
            raise ConfigError(f"--memory {memory}: {cls.name} functions have {min_memory} to {max_memory} MB")
        front = front or cls.fronts[0]
        if front not in cls.fronts:
            raise ConfigError(f"front end {front!r} for {cls.name}: use one of {', '.join(cls.fronts)}")
        return cls(Settings(timeout, memory, function_name or "nubes-app", front, request_limit))

    @property
    def label(self) -> str:
        return self.name

    @property
    def max_body(self) -> int:
        """Bodies over this are refused by the front end before they are read."""
        if self.settings.request_limit is not None:
            return self.settings.request_limit
        return int(self.figure("request_bytes"))

    @property
    def wait(self) -> float:
        """How long the caller waits for the function: its timeout, or the front end's if shorter."""
        t = self.settings.timeout
        return min(t, self.gateway_timeout) if self.gateway_timeout else t

    def answer(self, situation: str) -> Response:
        found = self.answers.get((self.key, situation))
        if found is None and situation in ("function_timeout", "response_too_large"):
            found = self.answers.get((self.key, "function_error"))
        if found is None:
            raise KeyError(f"no {situation} answer for {self.key}")
        return found.response()

    # -- the payload path -------------------------------------------------------------------------
    def encode(self, request: Request, request_id: str) -> Frame | Response:
        """The invocation ``(meta, body)`` for ``request``, or the front end's over-limit answer."""
        raise NotImplementedError

    def decode(self, meta: Mapping[str, Any], body: bytes) -> tuple[Response, str | None]:
        """The HTTP answer for what the adapter returned, and an error type if the invocation failed."""
        raise NotImplementedError

    def failure(self, kind: str) -> Response:
        """The answer for a failed invocation: ``timeout`` (the function's own), ``gateway_timeout``,
        ``out_of_memory`` or ``crash``."""
        if kind == "gateway_timeout":
            return self.answer("gateway_timeout")
        if kind == "timeout":
            return self.answer("function_timeout")
        return self.answer("function_error")

    def worker_env(self) -> dict[str, str]:
        """Environment variables the provider's runtime sets in the function's process."""
        return {}

    # -- events -----------------------------------------------------------------------------------
    def event_payload(self, kind: str, arg: str, *, request_id: str, bucket: str | None, size: int,
                      queue: str | None, home: str) -> Frame:
        """The payload delivering an ``object-created`` (``arg``: the key), ``message`` (the body) or
        ``schedule`` (the name) event; ``home`` is the app's home store URI (the default bucket)."""
        raise NotImplementedError

    # -- jobs (see nubes.adapters.emulator.jobs) ----------------------------------------------------
    @property
    def job_timeout(self) -> float:
        """How long one attempt of a job may run on this cloud (figure ``job_timeout_s``)."""
        return self.figure("job_timeout_s")

    def job_retry_delays(self, attempts: int) -> list[float]:
        """The waits before each retry of a job's delivery, for ``attempts`` attempts in all."""
        return [0.0] * max(0, attempts - 1)

    def job_payload(self, app: Any, job_id: str, token: str, request_id: str) -> Frame:
        """The payload delivering one attempt of a job, as this cloud delivers it to the function."""
        raise NotImplementedError

    def job_outcome(self, meta: Mapping[str, Any], body: bytes) -> str:
        """``"done"`` when the adapter's answer to a job delivery needs no other delivery, else ``"retry"``."""
        return "done" if meta.get("ok") and 200 <= int(meta.get("status") or 200) < 300 else "retry"

    def event_result(self, meta: Mapping[str, Any], body: bytes) -> EventResult:
        """What the adapter's answer to an event payload means."""
        if not meta.get("ok"):
            return EventResult(False, failure_detail(meta, body), str(meta.get("error_type") or "FunctionError"))
        return EventResult(True, body.decode("utf-8", "replace") or None)


def default_bucket(home: str, scheme: str) -> str:
    """The bucket/container of the home store when it is on ``scheme``, else a placeholder name."""
    if home.startswith(scheme):
        return home[len(scheme):].split("/", 1)[0]
    return "nubes-emulated"


def failure_detail(meta: Mapping[str, Any], body: bytes) -> Any:
    error = meta.get("error")
    if not error and body:
        try:
            error = json.loads(body)
        except ValueError:
            error = body.decode("utf-8", "replace")
    return error


def http_meta(request: Request, request_id: str, op: str) -> dict[str, Any]:
    """The ``meta`` of an HTTP request crossing to a worker as a function host receives it."""
    return {"op": op, "request_id": request_id, "method": request.method, "raw_path": request.raw_path,
            "query": request.query_string, "headers": request.headers.multi_items(), "scheme": request.scheme}


def error_frame(exc: BaseException, request_id: str | None = None) -> Frame:
    """A failed invocation as the runtime reports it: ``errorMessage``, ``errorType``, ``requestId``, and
    the stack from the function's handler down (without the emulator's own ``invoke`` frame, which
    must be where ``exc`` was caught)."""
    frames = traceback.extract_tb(exc.__traceback__)[1:]
    error = {"errorMessage": str(exc), "errorType": type(exc).__name__,
             "requestId": request_id or "", "stackTrace": traceback.format_list(frames)}
    return {"ok": False, "error_type": type(exc).__name__, "error": error}, json.dumps(error).encode()


def new_request_id() -> str:
    return str(uuid.uuid4())
