"""Run a nubes app on AWS Lambda: ``lambda_handler = nubes.adapters.aws.handler(app)``.

The returned ``handler(event, context)`` picks the event source whose ``infer`` predicate accepts
the payload, in this order: Application Load Balancer, Lambda Function URL, API Gateway HTTP API
(payload 2.0), API Gateway REST API / payload 1.0, S3 ObjectCreated, SQS, EventBridge schedule, and
a job's asynchronous invocation (:mod:`nubes.adapters.aws.jobs`).
HTTP payloads go through :meth:`nubes.App.handle` and come back as the source's proxy result (see
:mod:`nubes.adapters.aws.http`); the others through :meth:`nubes.App.handle_event` (see
:mod:`nubes.adapters.aws.events`). Any other payload raises :class:`nubes.errors.UnknownEvent`
(and is logged). The Lambda context gives the request id, deadline and platform
(:mod:`nubes.adapters.aws.context`). Importing this module loads no AWS SDK.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from nubes.adapters.aws.context import Invocation, invocation
from nubes.adapters.aws.events import EventBridgeSchedule, S3ObjectCreated, SqsBatch
from nubes.adapters.aws.http import Alb, FunctionUrl, HttpApi, RestApi
from nubes.adapters.aws.jobs import JobDelivery
from nubes.core.app import App
from nubes.errors import ConfigError, UnknownEvent

LambdaHandler = Callable[[Any, Any], Any]


class Source(Protocol):
    """One kind of Lambda payload: ``infer`` says whether an event is of this kind."""

    name: str

    def infer(self, event: Mapping[str, Any]) -> bool: ...

    def __call__(self, app: App, event: Mapping[str, Any], inv: Invocation) -> Any: ...


def sources(*, base_path: str | None = None) -> tuple[Source, ...]:
    """The event sources, in the order their predicates are tried."""
    return (Alb(), FunctionUrl(), HttpApi(), RestApi(base_path), S3ObjectCreated(), SqsBatch(), EventBridgeSchedule(),
            JobDelivery())


def handler(app: App, *, base_path: str | None = None) -> LambdaHandler:
    """The Lambda entry point for ``app``: ``handler(event, context)``.

    ``base_path`` removes a fixed path prefix from REST API paths (a custom domain's base path
    mapping); without it the prefix is found from ``resource`` and ``pathParameters``.
    HTTP results never raise (errors are problem+json answers); S3 and schedule handlers'
    exceptions propagate so Lambda retries; SQS failures come back as ``batchItemFailures``.
    """
    if not isinstance(app, App):
        raise ConfigError(f"nubes.adapters.aws.handler needs a nubes.App, not {type(app).__name__}")
    chain = sources(base_path=base_path)

    def lambda_handler(event: Any, context: Any) -> Any:
        inv = invocation(context)
        if isinstance(event, Mapping):
            for source in chain:
                if source.infer(event):
                    return source(app, event, inv)
        raise _unknown(app, event, inv, chain)

    lambda_handler.app = app  # type: ignore[attr-defined]
    lambda_handler.__doc__ = f"AWS Lambda entry point of nubes app {app.name!r}."
    return lambda_handler


def _unknown(app: App, event: Any, inv: Invocation, chain: tuple[Source, ...]) -> UnknownEvent:
    if isinstance(event, Mapping):
        keys = sorted(map(str, event))
        shape = f"an object with keys {keys[:12]}{' ...' if len(keys) > 12 else ''}"
    else:
        shape = f"a {type(event).__name__}"
    supported = "; ".join(s.name for s in chain)
    app.log.bind(request_id=inv.request_id).error("unknown event", adapter="aws", event_shape=shape)
    return UnknownEvent(f"the AWS adapter of app {app.name!r} does not recognise this event ({shape}); it handles: {supported}")


__all__ = ["Invocation", "LambdaHandler", "Source", "handler", "invocation", "sources"]
