"""The Lambda entry point :func:`handler` (see :mod:`nubes.adapters.aws` for the contract)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from nubes.adapters.aws.context import Invocation, invocation
from nubes.adapters.aws.events import EventBridgeSchedule, S3ObjectCreated, SqsBatch, unreadable
from nubes.adapters.aws.http import Alb, FunctionUrl, HttpApi, HttpSource, RestApi
from nubes.adapters.aws.jobs import JobDelivery
from nubes.adapters.aws.logs import configure_logging
from nubes.core.app import App
from nubes.errors import ConfigError

LambdaHandler = Callable[[Any, Any], Any]


class Source(Protocol):
    """One kind of Lambda payload: ``infer`` says whether an event is of this kind."""

    @property
    def name(self) -> str: ...

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
    HTTP results never raise (errors, malformed events included, are problem+json answers); S3 and
    schedule handlers' exceptions (and :class:`~nubes.errors.NoHandler`) propagate so Lambda
    retries; SQS failures come back as ``batchItemFailures``; unreadable events are logged and
    reported without raising (see :mod:`nubes.adapters.aws.events`).
    """
    if not isinstance(app, App):
        raise ConfigError(f"nubes.adapters.aws.handler needs a nubes.App, not {type(app).__name__}")
    chain = sources(base_path=base_path)
    lookalikes = _lookalikes(chain)
    configure_logging()

    def lambda_handler(event: Any, context: Any) -> Any:
        inv = invocation(context)
        if isinstance(event, Mapping):
            for source in chain:
                if source.infer(event):
                    return source(app, event, inv)
            http = _resembles(event, lookalikes)
            if http is not None:
                return http(app, event, inv)
        return _unknown(app, event, inv, chain)

    lambda_handler.app = app  # type: ignore[attr-defined]
    lambda_handler.__doc__ = f"AWS Lambda entry point of nubes app {app.name!r}."
    return lambda_handler


def _lookalikes(chain: tuple[Source, ...]) -> dict[type, HttpSource]:
    return {type(s): s for s in chain if isinstance(s, HttpSource)}


_REST_KEYS = ("httpMethod", "requestContext", "resource", "path", "multiValueHeaders", "queryStringParameters",
              "multiValueQueryStringParameters", "isBase64Encoded")


def _resembles(event: Mapping[str, Any], http: dict[type, HttpSource]) -> HttpSource | None:
    """The HTTP source a malformed event most looks like (its answer takes that shape), or None."""
    rc = event.get("requestContext")
    rc = rc if isinstance(rc, Mapping) else {}
    if "elb" in rc:
        return http[Alb]
    if event.get("version") == "2.0" or "http" in rc or "rawPath" in event or "rawQueryString" in event:
        domain = rc.get("domainName")
        return http[FunctionUrl] if isinstance(domain, str) and ".lambda-url." in domain else http[HttpApi]
    if any(key in event for key in _REST_KEYS):
        return http[RestApi]
    return None


def _unknown(app: App, event: Any, inv: Invocation, chain: tuple[Source, ...]) -> dict[str, str]:
    if isinstance(event, Mapping):
        keys = sorted(map(str, event))[:13]
        shape = f"an object with keys {keys[:12]}{' ...' if len(keys) > 12 else ''}"
    else:
        shape = f"a {type(event).__name__}"
    supported = "; ".join(s.name for s in chain)
    detail = f"the AWS adapter of app {app.name!r} does not recognise this event ({shape}); it handles: {supported}"
    return unreadable(app, inv, "unknown event", detail, event)


__all__ = ["Invocation", "LambdaHandler", "Source", "handler", "invocation", "sources"]
