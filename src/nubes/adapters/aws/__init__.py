"""Run a nubes app on AWS Lambda: ``lambda_handler = nubes.adapters.aws.handler(app)``.

The returned ``handler(event, context)`` picks the event source whose ``infer`` predicate accepts
the payload, in this order: Application Load Balancer, Lambda Function URL, API Gateway HTTP API
(payload 2.0), API Gateway REST API / payload 1.0, S3 ObjectCreated, SQS, EventBridge schedule, and
a job's asynchronous invocation (:mod:`nubes.adapters.aws.jobs`).
HTTP payloads go through :meth:`nubes.App.handle` and come back as the source's proxy result (see
:mod:`nubes.adapters.aws.http`); the others through :meth:`nubes.App.handle_event` (see
:mod:`nubes.adapters.aws.events`). The Lambda context gives the request id, deadline and platform
(:mod:`nubes.adapters.aws.context`). Importing this module loads no AWS SDK.

Malformed payloads never raise (Lambda would turn that into a 502 with nubes' frames in it): an
HTTP-shaped event that matches no source exactly (``httpMethod`` or ``requestContext.http``
missing, a field of the wrong type) is answered 400 in the shape of the source it resembles; a
payload that is no event nubes knows is logged and answered ``{"errorType": "UnknownEvent",
"errorMessage": ...}``. Created under Lambda (``AWS_LAMBDA_FUNCTION_NAME`` set), the handler makes
nubes' log lines follow ``AWS_LAMBDA_LOG_LEVEL`` / ``AWS_LAMBDA_LOG_FORMAT`` (:mod:`nubes.adapters.aws.logs`).

The names below load :mod:`.entry` (the event sources, the HTTP translation) on first use, so the
cloud's figures and prices (:mod:`.cloud`, :mod:`.prices`), which metering reads on every cloud, cost no
more than those modules.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Invocation", "LambdaHandler", "Source", "handler", "invocation", "sources"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from nubes.adapters.aws import entry

        return getattr(entry, name)
    raise AttributeError(f"module 'nubes.adapters.aws' has no attribute {name!r}")
