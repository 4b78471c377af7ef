"""The AWS artifact, unzipped alone into a read-only folder, run by the real Lambda RIE with
awslambdaric, answers SAM's rendered events exactly as the in-process emulator does."""

from __future__ import annotations

import base64
import copy
import json
import re
import tarfile
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from tests.build.conftest import APP, STORE, make_writable, unpack_read_only

from nubes.adapters.aws.emulation import AwsTarget
from nubes.adapters.aws.packaging import UNZIPPED_MAX
from nubes.core.loader import load_app
from nubes.deploy.build import BuildResult

DATA = Path(__file__).parents[1] / "data" / "aws"
RUNTIME_ENV = {"NUBES_METERING": "off"}  # both sides: no cost headers whose figures differ run to run


def event(name: str, **changes: Any) -> dict[str, Any]:
    e = json.loads((DATA / name).read_text(encoding="utf-8"))
    for key, value in changes.items():
        e[key] = value
    return e


def rest(method: str, path: str, body: str | None = None) -> dict[str, Any]:
    e = event("rest_sam.json", httpMethod=method, path=path, resource="/{proxy+}", pathParameters={"proxy": path[1:]},
              queryStringParameters=None, multiValueQueryStringParameters=None)
    e["requestContext"] = {**e["requestContext"], "httpMethod": method, "path": f"/prod{path}", "resourcePath": "/{proxy+}"}
    e["body"] = base64.b64encode(body.encode()).decode() if body is not None else None
    e["isBase64Encoded"] = body is not None
    return e


def s3_event(key: str) -> dict[str, Any]:
    e = event("s3_put_sam.json")
    e["Records"][0]["s3"]["object"]["key"] = key
    return e


def sqs_event(*bodies: str) -> dict[str, Any]:
    e = event("sqs_sam.json")
    first = e["Records"][0]
    e["Records"] = [{**copy.deepcopy(first), "messageId": f"m{n}", "body": body} for n, body in enumerate(bodies)]
    return e


CASES = {
    "rest (SAM)": event("rest_sam.json"),
    "http api (SAM)": event("http_sam.json"),
    "alb (SAM)": event("alb_sam.json"),
    "function url": event("function_url.json"),
    "rest hello": rest("GET", "/hello/caf%C3%A9"),
    "rest platform": rest("GET", "/platform"),
    "rest problem": rest("GET", "/teapot"),
    "rest crash": rest("GET", "/crash"),
    "rest unknown path": rest("GET", "/nowhere"),
    "rest store write": rest("PUT", "/notes/a", "written on S3"),
    "rest jinja2": rest("GET", "/template"),
    "s3 put (SAM)": s3_event("incoming/my%20report%20%C3%A9t%C3%A9.csv"),
    "s3 put, handler raises": s3_event("fail/x.csv"),
    "sqs (SAM)": event("sqs_sam.json"),
    "sqs, one poison message": sqs_event("fine", "poison pill", "fine too"),
    "schedule": event("schedule.json"),
    "unknown event": {"hello": "world"},
}


def normalise(result: Any) -> Any:
    """Request ids vary by invocation; everything else must be equal."""
    text = json.dumps(result, sort_keys=True)
    ids = set(re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text))
    for rid in ids:
        text = text.replace(rid, "RID")
    data = json.loads(text)
    if isinstance(data, dict) and "stackTrace" in data:  # file paths differ (/var/task vs the source tree)
        data["stackTrace"] = [re.sub(r'File "[^"]*/([^/"]+)"', r'File "\1"', line).split("\n")[0] for line in data["stackTrace"]]
        data["requestId"] = bool(data.get("requestId"))
    return data


@pytest.fixture(scope="module")
def emulator(moto: Any) -> Any:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {**moto.env(), **RUNTIME_ENV, "NUBES_STORAGE": STORE}.items():
            mp.setenv(key, value)
        app = load_app(APP)
        target = AwsTarget(app, {"function_name": "shop", "memory": 1024, "timeout": 30})

        def call(e: dict[str, Any]) -> Any:
            _meta, body = target.invoke({"request_id": str(uuid.uuid4()), "remaining": 30}, json.dumps(e).encode())
            return json.loads(body or b"null")

        yield call


@pytest.fixture(scope="module")
def task(aws_build: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = unpack_read_only(Path(aws_build.manifest["path"]), tmp_path_factory.mktemp("task") / "var-task")
    yield root
    make_writable(root)


@pytest.fixture(scope="module")
def lambda_rie(task: Path, moto: Any, ric_python: Path) -> Any:
    from tests.build.conftest import Rie

    rie = Rie(task, ric_python, {**moto.env(), **RUNTIME_ENV})
    yield rie
    rie.stop()


def test_manifest_fields_and_limits(aws_build: BuildResult) -> None:
    m = aws_build.manifest
    for key in ("cloud", "format", "path", "python", "arch", "unzipped_bytes", "zipped_bytes", "sha256", "packages"):
        assert key in m, key
    assert (m["cloud"], m["format"], m["python"], m["arch"], m["split"]) == ("aws", "zip", "3.12", "x86_64", False)
    assert m["unzipped_bytes"] <= UNZIPPED_MAX and m["handler"] == "lambda_function.handler"
    assert m["upload"] == ("s3" if m["zipped_bytes"] > 50 * 1024 * 1024 else "direct")
    with zipfile.ZipFile(m["path"]) as zf:
        infos = zf.infolist()
    assert sum(i.file_size for i in infos) == m["unzipped_bytes"]
    names = {p["name"] for p in m["packages"]}
    assert {"boto3", "Jinja2", "idna", "nubes"} <= names
    assert not names & {"typer", "rich", "pydantic", "duckdb", "polars", "scikit-learn"}  # CLI-only or not imported
    files = {i.filename for i in infos}
    assert not any(f.startswith(("nubes/cli/", "nubes/testing/")) for f in files)
    assert not any(f.endswith((".pyi", ".dist-info/RECORD")) or "/tests/" in f for f in files)
    assert "shop.py" in files and "__pycache__/shop.cpython-312.pyc" in files  # the app keeps its source
    assert "jinja2/environment.pyc" in files and "jinja2/environment.py" not in files  # sourceless distributions
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_two_builds_give_one_sha256(aws_build: BuildResult, tmp_path: Path, wheelhouse: Path) -> None:
    from tests.build.conftest import _build

    again = _build(tmp_path, "aws", STORE, wheelhouse, check=False)
    assert again.manifest["sha256"] == aws_build.manifest["sha256"]
    assert Path(again.manifest["path"]).read_bytes() == Path(aws_build.manifest["path"]).read_bytes()


@pytest.mark.parametrize("case", list(CASES))
def test_rie_answers_as_the_emulator(case: str, lambda_rie: Any, emulator: Any) -> None:
    _headers, got = lambda_rie.invoke(CASES[case])
    expected = emulator(CASES[case])
    assert normalise(got) == normalise(expected)
    if isinstance(got, dict) and "errorType" in got:  # this RIE sends no X-Amz-Function-Error header
        assert got["errorType"] == expected["errorType"] and got["errorMessage"] == expected["errorMessage"]


def test_the_function_writes_to_its_cloud_store_not_the_task_root(lambda_rie: Any, moto: Any, task: Path) -> None:
    _, result = lambda_rie.invoke(rest("PUT", "/notes/b", "on s3"))
    assert result["statusCode"] == 200 and json.loads(result["body"])["read_back"] == "on s3"
    listed = moto.client().list_objects_v2(Bucket="nubes-build-test", Prefix="shop/notes/")
    assert "shop/notes/b" in {o["Key"] for o in listed.get("Contents", [])}
    assert not (task / ".nubes").exists()


def test_image_context_runs_the_same_tree(tmp_path: Path, wheelhouse: Path, rie_factory: Any, moto: Any) -> None:
    from tests.build.conftest import _build

    built = _build(tmp_path / "out", "aws", STORE, wheelhouse, format="image", check=False)
    assert built.manifest["format"] == "image" and built.manifest["path"].endswith(".tar.gz")
    with tarfile.open(built.manifest["path"]) as tar:
        dockerfile = tar.extractfile("Dockerfile").read().decode()  # type: ignore[union-attr]
        tar.extractall(tmp_path / "ctx", filter="data")
    assert "FROM --platform=linux/amd64 public.ecr.aws/lambda/python:3.12" in dockerfile
    assert 'CMD ["lambda_function.handler"]' in dockerfile and "COPY task/ ${LAMBDA_TASK_ROOT}/" in dockerfile
    rie = rie_factory(tmp_path / "ctx" / "task", {**moto.env(), **RUNTIME_ENV})
    _, result = rie.invoke(rest("GET", "/hello/image"))
    assert json.loads(result["body"])["greeting"] == "hello image"


def test_a_large_non_ascii_body_gets_the_same_answer(aws_build: BuildResult, tmp_path: Path, rie_factory: Any, emulator: Any,
                                                     moto: Any) -> None:
    task = unpack_read_only(Path(aws_build.manifest["path"]), tmp_path / "task")
    try:
        rie = rie_factory(task, {**moto.env(), **RUNTIME_ENV})
        try:
            _, got = rie.invoke(rest("GET", "/large-unicode"))
        except Exception as exc:  # the runtime refused the result: record it as the answer
            got = {"refused": type(exc).__name__}
        expected = emulator(rest("GET", "/large-unicode"))
        assert normalise(got) == normalise(expected)
    finally:
        make_writable(task)


def test_the_runtime_log_level_applies_to_nubes_logs(aws_build: BuildResult, tmp_path: Path, ric_python: Path,
                                                     moto: Any) -> None:
    from tests.build.conftest import Rie

    task = unpack_read_only(Path(aws_build.manifest["path"]), tmp_path / "task")
    rie = Rie(task, ric_python, {**moto.env(), **RUNTIME_ENV, "AWS_LAMBDA_LOG_LEVEL": "ERROR", "AWS_LAMBDA_LOG_FORMAT": "JSON"})
    try:
        _, result = rie.invoke(rest("GET", "/hello/logs"))
        assert result["statusCode"] == 200
    finally:
        output = rie.stop()
        make_writable(task)
    assert '"msg": "invocation"' not in output  # an info line, below the function's ERROR level
