"""Problem bodies never carry storage URIs or local paths: a storage error's full message goes to
the log, the answer says what kind of failure it was and which request to quote (issue 10, item 6)."""

from __future__ import annotations

import json

import pytest

import nubes
from nubes.errors import AccessDenied, NotFound, PreconditionFailed, StorageError

SECRET_URI = "s3://acme-private-bucket/tenants/7"
SECRET_PATH = "/srv/app/.nubes/objects"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (NotFound("no such object", uri=SECRET_URI, key="reports/q1.csv"), 404),
        (PreconditionFailed("etag changed", uri=f"file://{SECRET_PATH}", key="k"), 412),
        (AccessDenied("denied", uri=SECRET_URI), 403),
        (StorageError(f"disk full writing {SECRET_PATH}/x.tmp", uri=f"file://{SECRET_PATH}"), 500),
    ],
)
def test_storage_errors_answer_without_their_location(error: StorageError, status: int, capsys: pytest.CaptureFixture[str]) -> None:
    app = nubes.App("leaks", openapi=False, storage="mem://leaks")

    @app.get("/read")
    def read(ctx: nubes.Context) -> None:
        raise error

    response = app.handle(nubes.Request("GET", "/read"))
    body = response.body.decode()
    problem = json.loads(body)
    assert response.status == status and problem["status"] == status
    assert SECRET_URI not in body and SECRET_PATH not in body and "acme" not in body
    assert type(error).__name__ in problem["detail"] and problem["request_id"] in problem["detail"]
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    entry = next(line for line in logged if line["msg"] == "storage error")
    assert str(error) in json.dumps(entry)  # the whole message is in the log
    assert entry["request_id"] == problem["request_id"]
