"""Jobs on AWS Lambda: an asynchronous invocation of the same function runs each job.

:class:`LambdaDispatcher` calls ``Invoke`` with ``InvocationType="Event"`` on the running function
(``AWS_LAMBDA_FUNCTION_NAME``, pinned to ``AWS_LAMBDA_FUNCTION_VERSION`` unless ``$LATEST``) with the
payload ``{"nubes-job": {"id", "token"}}``; Lambda queues it and answers 202. :class:`JobDelivery`
is the event source that recognises that payload and runs one attempt (:meth:`nubes.App.run_job`).

Retries are Lambda's: an asynchronous invocation whose function errors (or times out, or runs out of
memory) is tried twice more, one minute then two minutes later (``MaximumRetryAttempts`` 2, the
default). An attempt that failed with a 5xx, or found the job held by another live runner, raises
:class:`JobAttemptFailed` so Lambda retries; nubes' own ``max_attempts`` is 3 to match, so the job
ends ``failed`` with its problem when Lambda gives up. The function's timeout bounds each attempt
(up to 900 s): deploy a function with jobs with the timeout its longest job needs (API Gateway still
cuts HTTP at 30 s).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from nubes.core.job_runs import DELIVERY_KEY, delivery, parse_delivery
from nubes.errors import ConfigError

if TYPE_CHECKING:
    from nubes.adapters.aws.context import Invocation
    from nubes.core.app import App

_CLIENT: list[Any] = []
_LOCK = threading.Lock()


class JobAttemptFailed(RuntimeError):
    """Raised to Lambda so it retries the asynchronous invocation of a job."""


def lambda_client() -> Any:
    """One boto3 Lambda client per process (the standard configuration chain: region, endpoint, credentials)."""
    if not _CLIENT:
        with _LOCK:
            if not _CLIENT:
                import boto3

                _CLIENT.append(boto3.client("lambda"))
    return _CLIENT[0]


class LambdaDispatcher:
    """Starts a job by invoking ``function_name`` (at ``qualifier``) asynchronously."""

    def __init__(self, function_name: str, qualifier: str | None = None, client: Any = None) -> None:
        self.function_name = function_name
        self.qualifier = qualifier
        self._client = client

    @classmethod
    def from_environment(cls) -> LambdaDispatcher:
        name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        if not name:
            raise ConfigError("jobs on AWS Lambda start by invoking the function itself, but AWS_LAMBDA_FUNCTION_NAME "
                              "is not set (it is in every Lambda function)")
        version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        return cls(name, version if version and version != "$LATEST" else None)

    def submit(self, app: App, job_id: str, token: str) -> None:
        client = self._client or lambda_client()
        extra = {"Qualifier": self.qualifier} if self.qualifier else {}
        answer = client.invoke(FunctionName=self.function_name, InvocationType="Event",
                               Payload=json.dumps(delivery(job_id, token)).encode(), **extra)
        if answer.get("StatusCode") != 202:
            raise RuntimeError(f"Lambda answered {answer.get('StatusCode')} to the asynchronous invocation of job {job_id}")


class JobDelivery:
    """The payload of :class:`LambdaDispatcher`: one attempt of a job."""

    name: ClassVar[str] = "nubes job (asynchronous invocation)"

    @staticmethod
    def infer(event: Mapping[str, Any]) -> bool:
        return DELIVERY_KEY in event

    def __call__(self, app: App, event: Mapping[str, Any], inv: Invocation) -> dict[str, str]:
        parsed = parse_delivery(event)
        if parsed is None:
            app.log.bind(request_id=inv.request_id).error("malformed job delivery dropped")
            return {"outcome": "refused"}
        job_id, token = parsed
        outcome = app.run_job(job_id, token=token, platform=inv.platform, deadline=inv.deadline, request_id=inv.request_id)
        if outcome in ("retry", "busy"):
            raise JobAttemptFailed(f"job {job_id}: {'the attempt failed' if outcome == 'retry' else 'another runner holds it'}; "
                                   "Lambda retries this asynchronous invocation")
        return {"job": job_id, "outcome": outcome}
