"""``nubes emit`` and the ``--emulate`` side of ``nubes serve`` / ``nubes invoke``: run an app the
way AWS Lambda, Cloud Functions or Azure Functions would (see :mod:`nubes.adapters.emulator`)."""

from __future__ import annotations

import json
import sys
from datetime import UTC
from typing import Annotated, Any

import typer
from rich.markup import escape

from nubes.cli.common import AppArg, cli, err, fail, load
from nubes.core.clouds import names as _cloud_names
from nubes.core.request import Request
from nubes.core.response import Response
from nubes.errors import NubesError

PROVIDERS = _cloud_names()

EmulateOpt = Annotated[str | None, typer.Option("--emulate", metavar="PROVIDER",
                                                help="answer as this provider would: aws, gcp or azure (its payloads, adapter, limits)")]
AwsEventOpt = Annotated[
    str | None,
    typer.Option(
        "--aws-event",
        "--front",
        help="with --emulate aws: the front end: http (API Gateway HTTP API, payload 2.0), rest (REST API), alb, url (Function URL)",
    ),
]
TimeoutOpt = Annotated[float | None, typer.Option("--timeout", metavar="SECONDS",
                                                  help="with --emulate: the function's timeout (default: the provider's)")]
MemoryOpt = Annotated[int | None, typer.Option("--memory", metavar="MB",
                                                help="with --emulate: the function's memory (default: the provider's)")]
WorkersOpt = Annotated[int, typer.Option("--workers", help="with --emulate: function instances serving requests at once")]
JobTimeoutOpt = Annotated[float | None, typer.Option("--job-timeout", metavar="SECONDS",
                                                     help="with --emulate: how long a job's attempt may run (default: the cloud's)")]
JobRetryOpt = Annotated[float | None, typer.Option("--job-retry-delay", metavar="SECONDS",
                                                   help="with --emulate: retry a failed job after this long (default: the cloud's delays)")]


def _check(emulate: str | None, aws_event: str | None, timeout: float | None, memory: int | None, workers: int | None) -> None:
    """Refuse emulation options without --emulate; the emulated cloud itself checks their values."""
    if emulate is None:
        given = [name for name, value in (("--timeout", timeout), ("--memory", memory), ("--aws-event", aws_event))
                 if value is not None]
        if workers not in (None, 2):
            given.append("--workers")
        if given:
            fail(f"{', '.join(given)} need --emulate {'|'.join(PROVIDERS)}")
        return
    if emulate not in PROVIDERS:
        fail(f"--emulate {emulate!r}: use one of {', '.join(PROVIDERS)}")
    if workers is not None and workers < 1:
        fail(f"--workers {workers}: at least 1")


def _emulator(spec: str, emulate: str, aws_event: str | None, timeout: float | None, memory: int | None, workers: int,
              request_limit: int | None = None, **jobs: Any) -> Any:
    from nubes.adapters.emulator import Emulator

    try:
        return Emulator(load(spec), emulate, aws_event=aws_event, timeout=timeout, memory=memory, workers=workers,
                        request_limit=request_limit, spec=spec, **jobs)
    except NubesError as exc:
        fail(str(exc))


def serve_emulated(spec: str, host: str, port: int, emulate: str, aws_event: str | None, timeout: float | None,
                   memory: int | None, workers: int, request_limit: int | None = None, job_timeout: float | None = None,
                   job_retry_delay: float | None = None) -> None:
    """``nubes serve APP --emulate PROVIDER``: serve until Ctrl+C / SIGTERM, then stop every worker."""
    from nubes.adapters.emulator import EmulatorServer

    _check(emulate, aws_event, timeout, memory, workers)
    if job_timeout is not None and job_timeout <= 0:
        fail(f"--job-timeout {job_timeout:g}: a job's attempt needs more than 0 seconds")
    if job_retry_delay is not None and job_retry_delay < 0:
        fail(f"--job-retry-delay {job_retry_delay:g}: must be 0 or more seconds")
    emulator = _emulator(spec, emulate, aws_event, timeout, memory, workers, request_limit, job_timeout=job_timeout,
                         job_retry_delay=job_retry_delay)
    application = emulator.app
    try:
        server = EmulatorServer(emulator, application, host, port)
    except OSError as exc:
        emulator.close()
        fail(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another with --port")
    settings = emulator.provider.settings
    err.print(f"nubes: emulating {emulator.provider.label} for {escape(repr(application.name))} on [bold]{server.url}[/]  "
              f"(timeout {settings.timeout:g} s, memory {settings.memory} MB, up to {workers} workers; Ctrl+C to stop)")
    if any(r.options.get("job") for r in application.routes):
        profile = emulator.provider
        delays = [job_retry_delay] * 2 if job_retry_delay is not None else profile.job_retry_delays(application.jobs.max_attempts)
        err.print(f"       jobs: each attempt up to {job_timeout or profile.job_timeout:g} s, {application.jobs.max_attempts} attempts, "
                  f"retried after {', '.join(f'{d:g}' for d in delays) or '-'} s (--job-timeout, --job-retry-delay)")

    try:
        server.serve_forever()  # returns on SIGINT / SIGTERM, once the requests in flight are answered
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()  # also stops the workers
    err.print("nubes: stopped")


def invoke_emulated(spec: str, request: Request, emulate: str, aws_event: str | None, timeout: float | None,
                    memory: int | None) -> Response:
    """``nubes invoke --emulate``: one request through one fresh worker (a cold start)."""
    _check(emulate, aws_event, timeout, memory, None)
    emulator = _emulator(spec, emulate, aws_event, timeout, memory, 1)
    try:
        response: Response = emulator.handle(request)
        if emulator._jobs is not None:  # the request submitted a job: let it run before the workers stop
            err.print("nubes: waiting for the job this request submitted (Ctrl+C stops it)")
            emulator.jobs.drain()
        return response
    finally:
        emulator.close()


@cli.command()
def emit(
    app: AppArg,
    kind: Annotated[str, typer.Argument(metavar="EVENT", help="object-created, message or schedule")],
    value: Annotated[str, typer.Argument(metavar="VALUE", help="the object KEY, the message BODY, or the schedule NAME")],
    emulate: EmulateOpt = None,
    bucket: Annotated[
        str | None,
        typer.Option("--bucket", help="object-created: bucket / container (default: the app's home store's, else nubes-emulated)"),
    ] = None,
    size: Annotated[int, typer.Option("--size", help="object-created: object size in bytes")] = 0,
    queue: Annotated[str | None, typer.Option(
        "--queue", help="message: the queue (a logical name bound in nubes.toml, or the queue / topic itself)")] = None,
    source: Annotated[str | None, typer.Option(
        "--source", help="object-created: the logical source (bound per cloud in nubes.toml [deploy.CLOUD.sources]); "
                         "KEY is relative to it")] = None,
    timeout: TimeoutOpt = None,
    memory: MemoryOpt = None,
) -> None:
    """Fire an event at the app's handlers: with --emulate, as that provider delivers it (S3 put /
    SQS / EventBridge; Cloud Storage / Pub/Sub CloudEvents; blob / queue / timer triggers) through
    its adapter in a fresh worker. Prints what the adapter returned; exits 1 if the handler failed."""
    from nubes.adapters.emulator import EVENT_KINDS

    if kind not in EVENT_KINDS:
        fail(f"event {kind!r}: use one of {', '.join(EVENT_KINDS)}")
    if size < 0:
        fail(f"--size {size}: must be 0 or more")
    if emulate is None:
        _check(None, None, timeout, memory, None)
        _emit_local(load(app), kind, value, bucket=bucket, size=size, queue=queue, source=source)
        return
    _check(emulate, None, timeout, memory, None)
    emulator = _emulator(app, emulate, None, timeout, memory, 1)
    try:
        result = emulator.emit(kind, value, bucket=bucket, size=size, queue=queue, source=source)
    except NubesError as exc:
        fail(str(exc))
    finally:
        emulator.close()
    print(json.dumps({"ok": result.ok, "result": result.output, **({"errorType": result.error_type} if result.error_type else {})},
                     default=str, indent=2))
    if not result.ok:
        raise typer.Exit(1)


def _emit_local(application: Any, kind: str, value: str, *, bucket: str | None, size: int, queue: str | None,
                source: str | None = None) -> None:
    """Without --emulate: the cloud-neutral event straight to :meth:`App.handle_event`."""
    from datetime import datetime

    from nubes.core.events import Message, ObjectCreated, Scheduled

    if kind == "object-created":
        store = f"file://{bucket}" if bucket else application.storage_uri
        event: Any = ObjectCreated(store=store, key=value, size=size, time=datetime.now(UTC), source=source)
    elif kind == "message":
        event = Message(id="local-1", body=value.encode("utf-8"), queue=queue or "")
    else:
        event = Scheduled(value, datetime.now(UTC))
    try:
        results = application.handle_event(event)
    except Exception as exc:
        print(json.dumps({"ok": False, "errorType": type(exc).__name__, "errorMessage": str(exc)}, indent=2))
        raise typer.Exit(1) from None
    print(json.dumps({"ok": True, "result": results}, default=str, indent=2))
    sys.stdout.flush()
