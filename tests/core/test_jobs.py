"""Jobs in process (the local dispatcher): 202 and a job to poll, progress, results, retries, cancel,
idempotency keys, the submitter's principal, and exactly one runner under races and crashes."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nubes
from nubes.core.auth import Auth, hash_key, new_key
from nubes.testing import Client

OWNER, OTHER, ADMIN = new_key(), new_key(), new_key()
KEYS = {hash_key(OWNER): {"id": "owner", "roles": ["trainer"], "tenant": "acme"},
        hash_key(OTHER): {"id": "other", "roles": ["trainer"]},
        hash_key(ADMIN): {"id": "ops", "roles": ["admin"]}}


class Held:
    """A dispatcher that keeps jobs queued until the test runs them."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def submit(self, app: nubes.App, job_id: str, token: str = "") -> None:
        self.ids.append(job_id)


def hold(app: nubes.App) -> tuple[Held, Client]:
    """Keep ``app``'s jobs queued until the test runs them; a client for it."""
    held = Held()
    app.jobs.dispatcher = held
    return held, Client(app)


def make_app(name: str) -> tuple[nubes.App, dict[str, Any]]:
    app = nubes.App(name, storage=f"mem://jobs-{name}-{time.monotonic_ns()}", auth=Auth(api_keys=KEYS))
    seen: dict[str, Any] = {"runs": 0, "fail": 0, "principals": []}
    lock = threading.Lock()

    @app.job("/train", auth="trainer")
    def train(ctx: nubes.Context, rows: int = 10, fail_times: int = 0, sleep: float = 0.0) -> dict:
        """Train something slow."""
        with lock:
            seen["runs"] += 1
            seen["principals"].append(ctx.principal.id if ctx.principal else None)
            attempt = seen["runs"]
        ctx.progress(0.5, "halfway")
        time.sleep(sleep)
        if attempt <= fail_times:
            raise RuntimeError("transient failure")
        return {"rows": rows, "attempt": attempt}

    @app.post("/bad", job=True)
    def bad(ctx: nubes.Context) -> dict:
        raise nubes.HTTPError(422, "the data cannot be trained on")

    return app, seen


def poll(client: Client, location: str, key: str, until: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + until
    while time.monotonic() < deadline:
        doc = client.get(location, headers={"x-api-key": key}).json()
        if doc["status"] in ("succeeded", "failed", "cancelled"):
            return doc
        time.sleep(0.05)
    raise AssertionError(f"job did not finish: {doc}")


def test_submit_poll_result_and_progress() -> None:
    app, seen = make_app("basic")
    client = Client(app)
    r = client.post("/train?rows=42", headers={"x-api-key": OWNER})
    assert r.status_code == 202
    doc = r.json()
    assert r.headers["location"] == f"/_nubes/jobs/{doc['id']}" == doc["location"]
    assert doc["status"] in ("queued", "running", "succeeded") and doc["route"] == "/train"
    done = poll(client, r.headers["location"], OWNER)
    assert done["status"] == "succeeded" and done["result"] == {"rows": 42, "attempt": 1}
    assert done["progress"]["value"] == 1.0 and done["attempts"] == 1 and done["cost_usd"] > 0
    result = client.get(f"{r.headers['location']}/result", headers={"x-api-key": OWNER})
    assert result.status_code == 200 and result.json() == {"rows": 42, "attempt": 1}
    assert seen["principals"] == ["owner"]  # the submitter's principal carried over


def test_bad_parameters_and_auth_are_refused_at_submit() -> None:
    app, seen = make_app("refused")
    client = Client(app)
    assert client.post("/train?rows=many", headers={"x-api-key": OWNER}).status_code == 422
    assert client.post("/train").status_code == 401
    assert seen["runs"] == 0


def test_transient_failures_are_retried_then_fail_with_the_problem() -> None:
    app, _ = make_app("retry")
    client = Client(app)
    ok = poll(client, client.post("/train?fail_times=2", headers={"x-api-key": OWNER}).headers["location"], OWNER)
    assert ok["status"] == "succeeded" and ok["attempts"] == 3
    app2, seen2 = make_app("exhaust")
    client2 = Client(app2)
    failed = poll(client2, client2.post("/train?fail_times=9", headers={"x-api-key": OWNER}).headers["location"], OWNER)
    assert failed["status"] == "failed" and failed["attempts"] == 3 and failed["problem"]["status"] == 500
    assert seen2["runs"] == 3  # bounded
    client2.post("/bad")
    bad = poll(client2, client2.post("/bad").headers["location"], OWNER)
    assert bad["status"] == "failed" and bad["attempts"] == 1 and bad["problem"]["status"] == 422  # no retry of a 4xx


def test_cancel_a_queued_job_and_not_a_finished_one() -> None:
    app, seen = make_app("cancel")
    held, client = hold(app)
    location = client.post("/train", headers={"x-api-key": OWNER}).headers["location"]
    cancelled = client.delete(location, headers={"x-api-key": OWNER})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert app.run_job(held.ids[0]) == "done" and seen["runs"] == 0  # a cancelled job never runs
    again = client.delete(location, headers={"x-api-key": OWNER})
    assert again.status_code == 409


def test_idempotency_key_returns_the_same_job() -> None:
    app, seen = make_app("idem")
    client = Client(app)
    headers = {"x-api-key": OWNER, "idempotency-key": "run-2026-12-03"}
    first = client.post("/train?rows=5", headers=headers)
    second = client.post("/train?rows=5", headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    poll(client, first.headers["location"], OWNER)
    assert seen["runs"] == 1
    different = client.post("/train?rows=5", headers=headers, content=b'{"x": 1}')
    assert different.status_code == 422
    other = client.post("/train?rows=5", headers={"x-api-key": OTHER, "idempotency-key": "run-2026-12-03"})
    assert other.json()["id"] != first.json()["id"]  # keys are per caller


def test_anonymous_idempotent_job_ids_are_random_not_derived_from_the_key() -> None:
    ids = []
    for _ in range(2):  # the same app name, route and key: an id derived from them would be guessable
        app, _ = make_app("idem-anon")
        held, client = hold(app)
        first = client.post("/bad", headers={"idempotency-key": "nightly"})
        again = client.post("/bad", headers={"idempotency-key": "nightly"})
        assert first.status_code == again.status_code == 202 and first.json()["id"] == again.json()["id"]
        assert len(held.ids) == 1
        ids.append(first.json()["id"])
    assert ids[0] != ids[1]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert "key_index" not in first.json()


@settings(max_examples=25, deadline=None)
@given(key=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=255).map(str.strip)
       .filter(bool))
def test_any_idempotency_key_maps_to_one_job(key: str) -> None:
    app, _ = make_app("idem-any")
    held, client = hold(app)
    answers = [client.post("/train", headers={"x-api-key": OWNER, "idempotency-key": key}) for _ in range(2)]
    assert [a.status_code for a in answers] == [202, 202] and answers[0].json()["id"] == answers[1].json()["id"]
    assert held.ids == [answers[0].json()["id"]]


def test_concurrent_submits_with_one_key_start_one_job() -> None:
    app, _ = make_app("idem-race")
    held, client = hold(app)
    barrier = threading.Barrier(6)
    answers: list[Any] = []

    def submit() -> None:
        barrier.wait()
        answers.append(client.post("/train", headers={"x-api-key": OWNER, "idempotency-key": "race"}))

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [a for a in answers if a.status_code == 202]
    assert all(a.status_code in (202, 409) for a in answers) and ok
    assert len({a.json()["id"] for a in ok}) == 1 and held.ids == [ok[0].json()["id"]]
    assert [o.key for o in app.storage.list("_nubes/jobs/") if o.key.endswith("job.json")] == [f"_nubes/jobs/{held.ids[0]}/job.json"]


def test_a_key_whose_job_has_expired_starts_a_new_job() -> None:
    app, _ = make_app("idem-expired")
    held, client = hold(app)
    app.jobs.retention_s = 0.0
    headers = {"x-api-key": OWNER, "idempotency-key": "once"}
    first = client.post("/train", headers=headers).json()["id"]
    assert app.run_job(first) == "done"
    assert client.get(f"/_nubes/jobs/{first}", headers={"x-api-key": OWNER}).status_code == 404  # expired, deleted
    second = client.post("/train", headers=headers)
    assert second.status_code == 202 and second.json()["id"] != first and held.ids == [first, second.json()["id"]]


def test_a_json_typed_result_that_is_not_json_still_finishes_the_job() -> None:
    app = nubes.App("notjson", storage=f"mem://notjson-{time.monotonic_ns()}", auth=False, extensions=[])

    @app.job("/broken")
    def broken(ctx: nubes.Context) -> nubes.Response:
        return nubes.Response(b'{"half": ', 200, {}, "application/json")

    held, client = hold(app)
    location = client.post("/broken").headers["location"]
    assert app.run_job(held.ids[0]) == "done"
    doc = client.get(location).json()
    assert doc["status"] == "succeeded" and doc["result"] is None
    assert client.get(location + "/result").content == b'{"half": '


def test_jobs_are_visible_to_their_submitter_and_admins_only() -> None:
    app, _ = make_app("owner")
    client = Client(app)
    location = client.post("/train", headers={"x-api-key": OWNER}).headers["location"]
    poll(client, location, OWNER)
    assert client.get(location, headers={"x-api-key": OTHER}).status_code == 404
    assert client.get(location).status_code == 404
    assert client.get(location, headers={"x-api-key": ADMIN}).status_code == 200
    assert client.get("/_nubes/jobs/not-a-job", headers={"x-api-key": ADMIN}).status_code == 404


def test_exactly_one_runner_under_a_race() -> None:
    app, seen = make_app("race")
    held, client = hold(app)
    location = client.post("/train?sleep=0.3", headers={"x-api-key": OWNER}).headers["location"]
    outcomes: list[str] = []
    threads = [threading.Thread(target=lambda: outcomes.append(app.run_job(held.ids[0]))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen["runs"] == 1 and poll(client, location, OWNER)["status"] == "succeeded"


def test_a_crashed_runner_is_rerun_after_its_lease_and_bounded() -> None:
    app, seen = make_app("crash")
    held, client = hold(app)
    location = client.post("/train", headers={"x-api-key": OWNER}).headers["location"]
    job_id = held.ids[0]
    outcome, claimed = app.jobs.claim(job_id, lease_s=0.2)  # a runner claims it, then dies without a word
    assert outcome == "claimed" and claimed is not None
    assert app.run_job(job_id) == "busy" and seen["runs"] == 0  # its lease is live: nobody else runs it
    time.sleep(0.3)
    assert app.run_job(job_id) == "done" and seen["runs"] == 1  # expired: re-run once
    doc = poll(client, location, OWNER)
    assert doc["status"] == "succeeded" and doc["attempts"] == 2
    location = client.post("/train", headers={"x-api-key": OWNER}).headers["location"]
    job_id = held.ids[1]
    for _ in range(3):  # three runners die
        assert app.jobs.claim(job_id, lease_s=0.0)[0] == "claimed"
    time.sleep(0.05)
    app.run_job(job_id)
    failed = poll(client, location, OWNER)
    assert failed["status"] == "failed" and "3 times" in failed["problem"]["detail"]


def test_a_finished_job_is_kept_for_its_retention() -> None:
    app, _ = make_app("retention")
    client = Client(app)
    location = client.post("/train", headers={"x-api-key": OWNER}).headers["location"]
    poll(client, location, OWNER)
    app.jobs.retention_s = 0.0
    job_id = location.rsplit("/", 1)[1]
    doc, etag = app.jobs.load(job_id)
    doc["expires"] = "2000-01-01T00:00:00+00:00"
    app.jobs.store.put(f"_nubes/jobs/{job_id}/job.json", json.dumps(doc).encode(), if_match=etag)
    assert client.get(location, headers={"x-api-key": OWNER}).status_code == 404
    assert not app.jobs.store.exists(f"_nubes/jobs/{job_id}/job.json")


def test_secrets_are_not_stored_with_the_request() -> None:
    app, _ = make_app("secrets")
    held, client = hold(app)
    client.post("/train", headers={"x-api-key": OWNER, "authorization": "Bearer xyz", "cookie": "s=1"})
    stored = app.jobs.store.get(f"_nubes/jobs/{held.ids[0]}/request.json").decode()
    assert OWNER not in stored and "xyz" not in stored and "s=1" not in stored


@pytest.mark.parametrize("path", ["/_nubes/jobs/{id}", "/_nubes/jobs/{id}/result"])
def test_job_routes_answer_problems(path: str) -> None:
    app, _ = make_app("problems")
    _, client = hold(app)
    location = client.post("/train", headers={"x-api-key": OWNER}).headers["location"]
    job_id = location.rsplit("/", 1)[1]
    r = client.get(path.format(id=job_id), headers={"x-api-key": OWNER})
    if path.endswith("/result"):
        assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
    else:
        assert r.status_code == 200 and r.json()["status"] == "queued"


def test_a_live_runner_renews_its_lease_so_no_second_runner_starts() -> None:
    app, seen = make_app("renew")
    app.jobs.lease_s = 0.3  # renewed every 0.1 s while the handler sleeps four leases long
    held, client = hold(app)
    location = client.post("/train?sleep=1.2", headers={"x-api-key": OWNER}).headers["location"]
    first = threading.Thread(target=app.run_job, args=(held.ids[0],))
    first.start()
    time.sleep(0.2)
    others = []
    while first.is_alive():
        others.append(app.run_job(held.ids[0]))
        time.sleep(0.1)
    first.join()
    assert others and set(others) == {"busy"} and seen["runs"] == 1
    assert poll(client, location, OWNER)["status"] == "succeeded"


def test_a_poll_restarts_a_job_whose_runner_is_gone_and_fails_it_when_out_of_attempts() -> None:
    app, seen = make_app("reap")
    held, client = hold(app)
    location = client.post("/train", headers={"x-api-key": OWNER}).headers["location"]
    job_id = held.ids[0]
    assert app.jobs.claim(job_id, lease_s=-10)[0] == "claimed"  # claimed, then the runner vanished
    doc = client.get(location, headers={"x-api-key": OWNER}).json()
    assert doc["status"] == "queued" and "attempt 1" in doc["problem"]["detail"] and held.ids == [job_id, job_id]
    assert app.run_job(job_id) == "done" and seen["runs"] == 1
    assert poll(client, location, OWNER)["attempts"] == 2
    location = client.post("/train", headers={"x-api-key": OWNER}).headers["location"]
    job_id = held.ids[-1]
    for _ in range(3):
        assert app.jobs.claim(job_id, lease_s=-10)[0] == "claimed"
        app.jobs.expire(job_id, None, {"status": 500, "detail": "worker killed"}) if _ < 2 else None
    doc = client.get(location, headers={"x-api-key": OWNER}).json()
    assert doc["status"] == "failed" and doc["attempts"] == 3


def test_a_delivery_with_the_wrong_token_is_refused() -> None:
    app, seen = make_app("token")
    held = Held()
    app.jobs.dispatcher = held
    Client(app).post("/train", headers={"x-api-key": OWNER})
    assert app.run_job(held.ids[0], token="0" * 32) == "refused" and seen["runs"] == 0
    token = app.jobs.load(held.ids[0])[0]["run_token"]
    assert app.run_job(held.ids[0], token=token) == "done" and seen["runs"] == 1
    public = Client(app).get(f"/_nubes/jobs/{held.ids[0]}", headers={"x-api-key": OWNER}).json()
    assert "run_token" not in public and "runner" not in public and "lease_until" not in public


def test_a_job_that_cannot_be_started_answers_503_and_is_failed() -> None:
    app, _ = make_app("nostart")

    class Broken:
        def submit(self, app: nubes.App, job_id: str, token: str) -> None:
            raise ConnectionError("queue unreachable")

    app.jobs.dispatcher = Broken()
    r = Client(app).post("/train", headers={"x-api-key": OWNER})
    detail = r.json()["detail"]
    assert r.status_code == 503 and "ConnectionError" in detail and r.headers["x-nubes-request-id"] in detail
    assert "queue unreachable" not in detail  # the error's text (ARNs, URLs) stays in the log
    doc, _ = app.jobs.load(r.json()["job"])
    assert doc["status"] == "failed" and doc["problem"]["status"] == 503


def test_delivery_payloads_are_parsed_strictly() -> None:
    from nubes.core.job_runs import delivery, delivery_from_http, parse_delivery

    good = delivery("a" * 32, "t" * 32)
    assert parse_delivery(good) == ("a" * 32, "t" * 32)
    for bad in ({}, {"nubes-job": "x"}, {"nubes-job": {"id": "short", "token": "t"}}, {**good, "extra": 1},
                {"nubes-job": {"id": "a" * 32, "token": ""}}):
        assert parse_delivery(bad) is None
    body = json.dumps(good).encode()
    assert delivery_from_http("POST", f"/_nubes/jobs/{'a' * 32}/run", body) == ("a" * 32, "t" * 32)
    assert delivery_from_http("POST", f"/_nubes/jobs/{'b' * 32}/run", body) is None  # path and body disagree
    assert delivery_from_http("GET", f"/_nubes/jobs/{'a' * 32}/run", body) is None
    assert delivery_from_http("POST", f"/_nubes/jobs/{'a' * 32}/run", b"{") is None


@settings(max_examples=150, deadline=None)
@given(method=st.sampled_from(["POST", "GET", "PUT"]), path=st.text(max_size=80), body=st.binary(max_size=300),
       payload=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=40),
                            lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=12), kids, max_size=3),
                            max_leaves=8))
def test_job_deliveries_are_parsed_without_surprises(method: str, path: str, body: bytes, payload: Any) -> None:
    """Whatever arrives at the delivery path (an untrusted request on GCP), parsing never raises and
    accepts only the exact shape: POST /_nubes/jobs/{id}/run with {"nubes-job": {"id": id, "token": t}}."""
    from nubes.core.job_runs import delivery_from_http, parse_delivery

    for raw in (body, json.dumps(payload).encode()):
        got = delivery_from_http(method, path, raw)
        if got is not None:
            job_id, token = got
            assert method == "POST" and path == f"/_nubes/jobs/{job_id}/run" and len(job_id) == 32 and 0 < len(token) <= 64
    parsed = parse_delivery(payload)
    assert parsed is None or (isinstance(payload, dict) and set(payload) == {"nubes-job"})


@settings(max_examples=60, deadline=None)
@given(depth=st.integers(min_value=900, max_value=4090), opener=st.sampled_from([b"[", b'{"a":', b'{"nubes-job":']))
def test_deeply_nested_deliveries_are_not_deliveries(depth: int, opener: bytes) -> None:
    """JSON nested deeper than the parser recurses (RecursionError, not ValueError) is no delivery:
    the GCP function answered it 500, the Azure jobs function raised so the host retried and poisoned."""
    from nubes.core.job_runs import delivery_from_body, delivery_from_http

    body = (opener * depth)[:4096]
    assert delivery_from_body(body) is None
    assert delivery_from_body(opener * 100_000) is None
    assert delivery_from_http("POST", f"/_nubes/jobs/{'a' * 32}/run", body) is None


def test_a_lost_job_that_cannot_be_restarted_is_failed_not_left_queued() -> None:
    app, _ = make_app("norestart")
    held, client = hold(app)
    location = client.post("/train", headers={"x-api-key": OWNER}).headers["location"]
    assert app.jobs.claim(held.ids[0], lease_s=-10)[0] == "claimed"

    class Broken:
        def submit(self, app: nubes.App, job_id: str, token: str) -> None:
            raise ConnectionError("queue gone")

    app.jobs.dispatcher = Broken()
    polled = client.get(location, headers={"x-api-key": OWNER})
    doc, detail = polled.json(), polled.json()["problem"]["detail"]
    assert doc["status"] == "failed" and doc["problem"]["status"] == 503 and "ConnectionError" in detail
    assert "queue gone" not in detail and polled.headers["x-nubes-request-id"] in detail
