"""Per-invocation overhead of nubes' cloud adapters against the usual baseline for each provider.

One invocation is: provider payload in -> adapter -> a trivial route returning a small dict ->
provider result out, with nubes' defaults on: metering prices every call (headers, log fields, a
ledger record buffered for the home store, here a temporary ``file://`` folder). For AWS the
baseline is what a competent user would write by hand: Mangum wrapping a Starlette app with one
JSON route, fed the very same event object. Rows marked ``real ctx`` pass a context like the Lambda
runtime's (a real cloud: records buffered in memory, written by a background thread); the others
pass nubes' ``LambdaContext`` stand-in (emulated: records also go to the local spool). The nubes app
logs its usual JSON line per call (stderr goes to /dev/null while timing); the ``log off`` rows show
the same calls with the ``nubes`` logger disabled.

Each case runs ``--repeat`` rounds; a round times ``--batch`` calls of nubes and of the baseline
(alternating which goes first) after untimed warm-ups; the table gives the median microseconds per
call over the rounds and the ratio nubes / baseline (goal: <= 1.00, nubes no slower).

Cases live in :data:`CASES` (provider, name, nubes callable, baseline name, baseline callable); the
GCP and Azure adapters add their rows there with their own baselines.

    .venv/bin/python bench/adapter_overhead.py [--repeat 31] [--batch 200] [--only aws]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import nubes

HOME = f"file://{tempfile.mkdtemp(prefix='nubes-bench-adapter-')}"  # the apps' home store (ledger, spool)

Call = Callable[[], Any]


@dataclass
class Case:
    """One row: ``nubes`` and ``baseline`` are zero-argument callables doing one full invocation."""

    provider: str
    name: str
    nubes: Call
    baseline_name: str
    baseline: Call
    setup: Callable[[], None] | None = None  # run before timing this row (e.g. logging on/off)


def trivial_app() -> nubes.App:
    app = nubes.App("bench", openapi=False, storage=HOME)

    @app.get("/ping")
    def ping(ctx: nubes.Context) -> dict[str, Any]:
        return {"ok": True}

    return app


# -- AWS ----------------------------------------------------------------------------------------
def aws_cases() -> list[Case]:
    from mangum import Mangum
    from starlette.applications import Starlette
    from starlette.requests import Request as StarletteRequest
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from nubes.adapters.aws import handler
    from nubes.adapters.aws.builders import (
        LambdaContext,
        alb_event,
        http_api_event,
        rest_api_event,
    )

    async def ping(request: StarletteRequest) -> JSONResponse:
        return JSONResponse({"ok": True})

    mangum = Mangum(Starlette(routes=[Route("/ping", ping)]), lifespan="off")
    lam = handler(trivial_app())
    context = LambdaContext("bench", 1024, 900.0)

    class RuntimeContext:
        """What the Lambda runtime passes (awslambdaric's LambdaContext): no ``emulated`` flag."""

        function_name = "bench"
        memory_limit_in_mb = "1024"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
        aws_request_id = "8f0c7a3e-1f2b-4c5d-9e6f-0a1b2c3d4e5f"

        def get_remaining_time_in_millis(self) -> int:
            return 900_000

    real = RuntimeContext()
    request = nubes.Request("GET", "/ping", headers={"accept": "application/json", "user-agent": "bench"})
    events = {
        "REST API": rest_api_event(request),
        "HTTP API": http_api_event(request),
        "ALB": alb_event(request),
    }
    for name, event in events.items():  # both answer the same thing
        ours, theirs = lam(event, context), mangum(event, context)
        assert ours["statusCode"] == theirs["statusCode"] == 200, (name, ours, theirs)
        assert ours["body"].replace(" ", "") == theirs["body"] == '{"ok":true}', (name, ours, theirs)
        assert "x-nubes-cost-usd" in (ours.get("headers") or ours.get("multiValueHeaders") or {})  # metering is on

    def logs(on: bool) -> Callable[[], None]:
        return lambda: logging.getLogger("nubes").setLevel(logging.INFO if on else logging.CRITICAL + 1)

    http = events["HTTP API"]
    return [
        Case("aws", f"{name}{suffix}", (lambda e=event: lam(e, context)), "Mangum+Starlette",
             (lambda e=event: mangum(e, context)), logs(on))
        for on, suffix in ((True, ""), (False, ", log off"))
        for name, event in events.items()
    ] + [
        Case("aws", f"HTTP API, real ctx{suffix}", (lambda: lam(http, real)), "Mangum+Starlette", (lambda: mangum(http, real)),
             logs(on))
        for on, suffix in ((True, ""), (False, ", log off"))
    ]


PROVIDERS: dict[str, Callable[[], list[Case]]] = {"aws": aws_cases}
# e.g. PROVIDERS["gcp"] = gcp_cases; PROVIDERS["azure"] = azure_cases (same Case rows)


# -- GCP ----------------------------------------------------------------------------------------
def _nubes_logs(on: bool) -> Callable[[], None]:
    return lambda: logging.getLogger("nubes").setLevel(logging.INFO if on else logging.CRITICAL + 1)


def gcp_cases() -> list[Case]:
    """Cloud Functions: the baseline is a plain functions-framework target, a function that reads the
    flask.Request (path, query, headers, body) and answers the same JSON as a flask.Response, fed the
    very same request. It has no routing, binding, errors or logs: a floor, not a peer framework."""
    import json

    import flask

    from nubes.adapters.gcp.builders import to_flask_request
    from nubes.adapters.gcp.functions import http_function

    def plain(request: flask.Request) -> flask.Response:
        _ = (request.path, request.args, dict(request.headers), request.get_data())
        return flask.Response(json.dumps({"ok": True}, separators=(",", ":")), status=200, mimetype="application/json")

    target = http_function(trivial_app())
    request = to_flask_request(nubes.Request("GET", "/ping", headers={"accept": "application/json", "user-agent": "bench"}))
    ours, theirs = target(request), plain(request)
    assert ours.status_code == theirs.status_code == 200, (ours, theirs)
    assert ours.get_data().replace(b" ", b"") == theirs.get_data() == b'{"ok":true}', (ours.get_data(), theirs.get_data())
    return [
        Case("gcp", f"HTTP{suffix}", lambda: target(request), "plain fn", lambda: plain(request), _nubes_logs(on))
        for on, suffix in ((True, ""), (False, ", log off"))
    ]


# -- Azure --------------------------------------------------------------------------------------
def azure_cases() -> list[Case]:
    """Azure Functions: the baseline is a plain v2-model HTTP function that reads the func.HttpRequest
    and answers the same JSON as a func.HttpResponse; both results go through the worker's
    HttpResponseConverter, as on Azure. Like the GCP baseline, a floor rather than a peer framework."""
    import json

    import azure.functions as func
    from azure.functions.http import HttpResponseConverter

    from nubes.adapters.azure.builders import invocation_context, to_http_request
    from nubes.adapters.azure.functions import HTTP_FUNCTION, function_app

    def plain(req: func.HttpRequest) -> func.HttpResponse:
        _ = (req.url, req.params, dict(req.headers), req.get_body())
        return func.HttpResponse(json.dumps({"ok": True}, separators=(",", ":")), status_code=200, mimetype="application/json")

    functions = {f.get_function_name(): f for f in function_app(trivial_app()).get_functions()}
    fn = functions[HTTP_FUNCTION].get_user_function()
    request = to_http_request(nubes.Request("GET", "/ping", headers={"accept": "application/json", "user-agent": "bench"}))
    context = invocation_context()

    def ours() -> Any:
        return HttpResponseConverter.encode(fn(request, context), expected_type=None)

    def theirs() -> Any:
        return HttpResponseConverter.encode(plain(request), expected_type=None)

    a, b = ours(), theirs()
    assert int(a.value["status_code"].value) == int(b.value["status_code"].value) == 200
    assert a.value["body"].value.replace(b" ", b"") == b.value["body"].value == b'{"ok":true}'
    return [
        Case("azure", f"HTTP{suffix}", ours, "plain fn", theirs, _nubes_logs(on))
        for on, suffix in ((True, ""), (False, ", log off"))
    ]


PROVIDERS["gcp"] = gcp_cases
PROVIDERS["azure"] = azure_cases


# -- timing -------------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    saved = sys.stderr
    with open(os.devnull, "w") as devnull:
        sys.stderr = devnull
        try:
            yield
        finally:
            sys.stderr = saved


def per_call_us(fn: Call, batch: int) -> float:
    start = time.perf_counter()
    for _ in range(batch):
        fn()
    return (time.perf_counter() - start) / batch * 1e6


def measure(case: Case, repeat: int, batch: int) -> tuple[float, float]:
    if case.setup:
        case.setup()
    ours: list[float] = []
    theirs: list[float] = []
    with quiet_stderr():
        for _ in range(max(1, batch // 4)):  # warm-up
            case.nubes()
            case.baseline()
        for i in range(repeat):
            if i % 2:
                theirs.append(per_call_us(case.baseline, batch))
                ours.append(per_call_us(case.nubes, batch))
            else:
                ours.append(per_call_us(case.nubes, batch))
                theirs.append(per_call_us(case.baseline, batch))
    return statistics.median(ours), statistics.median(theirs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=31, help="rounds per case (median taken)")
    parser.add_argument("--batch", type=int, default=200, help="calls per round")
    parser.add_argument("--only", default=",".join(PROVIDERS), help="providers to run, comma-separated")
    args = parser.parse_args(argv)

    rows = []
    for provider in args.only.split(","):
        for case in PROVIDERS[provider.strip()]():
            ours, theirs = measure(case, args.repeat, args.batch)
            rows.append((case, ours, theirs))

    print(f"adapter overhead per invocation, metering on (nubes' default): median of {args.repeat} rounds x "
          f"{args.batch} calls; Python {platform.python_version()} on {platform.machine()}")
    header = f"{'provider':<9}{'case':<29}{'nubes µs':>10}  {'baseline':<17}{'µs':>8}{'ratio':>8}  goal <= 1.00"
    print(header)
    print("-" * len(header))
    for case, ours, theirs in rows:
        ratio = ours / theirs
        print(f"{case.provider:<9}{case.name:<29}{ours:>10.1f}  {case.baseline_name:<17}{theirs:>8.1f}{ratio:>8.2f}  "
              f"{'ok' if ratio <= 1.0 else 'SLOWER'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
