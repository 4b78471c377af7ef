"""A loopback double of the Google Cloud APIs nubes deploys with, checking every request against the
discovery documents shipped with google-api-python-client (the services' published API descriptions).

Each request must match one method of one document (HTTP verb and path template); its query
parameters must be ones that method or the API declares (enums checked); its JSON body must fit the
method's request schema: known fields only, the declared types, enum values. A request that does not
is answered 400 and recorded in ``violations``, so a test can assert there were none. Behind the
check is a small in-memory store with each API's create/get/patch/list/delete and IAM policy
semantics; long-running operations complete at once. It proves the official clients send what the
published descriptions allow; it cannot prove what the live services accept beyond that.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.deploy.doubles import json_handler

APIS = (("cloudfunctions", "v2"), ("eventarc", "v1"), ("cloudscheduler", "v1"), ("pubsub", "v1"), ("iam", "v1"),
        ("run", "v2"), ("cloudresourcemanager", "v3"), ("storage", "v1"), ("cloudtasks", "v2"))
# Google's system parameters, accepted by every API with a $ prefix (https://cloud.google.com/apis/docs/system-parameters)
SYSTEM = frozenset({"$alt", "$callback", "$fields", "$key", "$prettyPrint", "$quotaUser", "$userIp", "$userProject"})
LRO_TYPES = {"cloudfunctions": "type.googleapis.com/google.cloud.functions.v2.Function",
             "eventarc": "type.googleapis.com/google.cloud.eventarc.v1.Trigger"}


def _documents() -> dict[str, dict[str, Any]]:
    import googleapiclient

    root = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"
    return {name: json.loads((root / f"{name}.{version}.json").read_text()) for name, version in APIS}


class Method:
    def __init__(self, api: str, doc: dict[str, Any], spec: dict[str, Any]) -> None:
        self.api, self.doc, self.spec, self.id = api, doc, spec, spec["id"]
        template = doc["servicePath"] + spec.get("flatPath", spec["path"])
        pattern = re.sub(r"\\\{(?:\\\+)?[^}]+?\\\}", "([^/]+)", re.escape("/" + template.lstrip("/")))
        self.regex = re.compile(pattern + r"\Z")
        self.literal = len(re.sub(r"\{[^}]+\}", "", template))

    def check_query(self, query: list[tuple[str, str]]) -> list[str]:
        known = {**self.doc.get("parameters", {}), **self.spec.get("parameters", {})}
        problems = []
        for key, value in query:
            param = known.get(key)
            if key in SYSTEM:
                continue
            if param is None or param.get("location") == "path":
                problems.append(f"{self.id}: unknown query parameter {key!r}")
            elif "enum" in param and value not in param["enum"]:
                problems.append(f"{self.id}: {key}={value!r} is not one of {param['enum']}")
        for name, param in self.spec.get("parameters", {}).items():
            if param.get("required") and param.get("location") == "query" and name not in dict(query):
                problems.append(f"{self.id}: required query parameter {name!r} missing")
        return problems

    def check_body(self, body: Any, enum_ints: bool = False) -> list[str]:
        ref = (self.spec.get("request") or {}).get("$ref")
        if ref is None:
            return [] if body in (None, {}) else [f"{self.id}: takes no body"]
        return check(body, {"$ref": ref}, self.doc["schemas"], ref, enum_ints)


def check(value: Any, schema: dict[str, Any], schemas: dict[str, Any], where: str, enum_ints: bool = False) -> list[str]:
    """Problems of ``value`` against a discovery ``schema`` (unknown fields, types, enums).

    ``enum_ints``: the request asked ``$alt=json;enum-encoding=int``, so an enum may be its number."""
    if "$ref" in schema:
        schema = schemas[schema["$ref"]]
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where}: expected an object"]
        out: list[str] = []
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in props:
                out += check(item, props[key], schemas, f"{where}.{key}", enum_ints)
            elif extra is not None:
                out += check(item, extra, schemas, f"{where}[{key}]", enum_ints)
            else:
                out.append(f"{where}: unknown field {key!r}")
        return out
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: expected an array"]
        return [p for i, item in enumerate(value) for p in check(item, schema.get("items", {}), schemas, f"{where}[{i}]", enum_ints)]
    if kind == "string":
        if schema.get("format") in ("int64", "uint64") and isinstance(value, int):
            return []
        if enum_ints and "enum" in schema and isinstance(value, int) and not isinstance(value, bool):
            return [] if 0 <= value < len(schema["enum"]) else [f"{where}: enum number {value} out of range"]
        if not isinstance(value, str):
            return [f"{where}: expected a string, got {value!r}"]
        if "enum" in schema and value not in schema["enum"]:
            return [f"{where}: {value!r} is not one of {schema['enum']}"]
        return []
    if kind == "integer":
        return [] if (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and value.lstrip("-").isdigit()) \
            else [f"{where}: expected an integer"]
    if kind == "number":
        return [] if isinstance(value, int | float) and not isinstance(value, bool) else [f"{where}: expected a number"]
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{where}: expected a boolean"]
    return []


class GcpDouble:
    """``with GcpDouble() as g:`` serves on 127.0.0.1; ``g.endpoint`` is the base URL, ``g.requests`` what came."""

    def __init__(self) -> None:
        self.docs = _documents()
        self.methods = [Method(api, doc, spec) for api, doc in self.docs.items() for spec in _walk(doc)]
        self.store: dict[str, dict[str, Any]] = {}
        self.policies: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.violations: list[str] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), json_handler(lambda verb, path, body, headers: self.handle(verb, path, body)))
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> GcpDouble:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def match(self, verb: str, path: str) -> tuple[Method, tuple[str, ...]] | None:
        found = [(m, m.regex.match(path)) for m in self.methods if m.spec["httpMethod"] == verb]
        hits = sorted(((m, r) for m, r in found if r), key=lambda mr: -mr[0].literal)
        return (hits[0][0], tuple(unquote(g) for g in hits[0][1].groups())) if hits else None

    def ids(self) -> int:
        return next(self._ids)

    def handle(self, verb: str, raw: str, body: bytes) -> tuple[int, Any]:
        url = urlsplit(raw)
        path, query = unquote(url.path), parse_qsl(url.query, keep_blank_values=True)
        self.requests.append((verb, path))
        if path.startswith("/upload/") and verb == "PUT":
            self.uploads[path.rsplit("/", 1)[1]] = body
            return 200, {}
        hit = self.match(verb, path)
        if hit is None:
            return self._bad(f"{verb} {path}: no method of the published APIs has this path")
        method, groups = hit
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            return self._bad(f"{method.id}: body is not JSON")
        enum_ints = "enum-encoding=int" in dict(query).get("$alt", "")
        problems = method.check_query(query) + method.check_body(payload, enum_ints)
        if problems:
            return self._bad("; ".join(problems))
        with self._lock:
            from tests.deploy.gcp_semantics import serve

            return serve(self, method, groups, dict(query), payload)

    def _bad(self, message: str) -> tuple[int, Any]:
        self.violations.append(message)
        return 400, {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}


def _walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    out = list(node.get("methods", {}).values())
    for child in node.get("resources", {}).values():
        out += _walk(child)
    return out
