"""A loopback HTTPS double of Azure Resource Manager (and a function app's publish endpoint) that checks
every request body against the management SDKs' own model descriptions.

A request's path must be one of the resource types nubes manages, with the ``api-version`` the SDK
client was generated for; its JSON body must fit the SDK model for that type: known fields only (the
REST names the models declare), no read-only field, required fields present (msrest models'
``_validation``), nested models and discriminated subtypes resolved the same way. A request that
does not is answered 400 and recorded in ``violations``. Behind the check, an in-memory store with
ARM's PUT/GET/PATCH/DELETE semantics; long-running operations finish at once. It proves the SDKs
send what their own models describe; it cannot prove what live Azure accepts beyond that.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import json
import re
import ssl
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.deploy.doubles import json_handler

_RG = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers"
_ACCOUNT = _RG + r"/Microsoft\.Storage/storageAccounts/(?P<account>[^/]+)"


def _models() -> list[tuple[str, re.Pattern[str], Any, str]]:
    from azure.mgmt.authorization import models as auth
    from azure.mgmt.eventgrid import models as grid
    from azure.mgmt.storage import models as storage
    from azure.mgmt.web import models as web

    table = [
        ("web", _RG + r"/Microsoft\.Web/serverfarms/(?P<name>[^/]+)", web.AppServicePlan, "put"),
        ("web", _RG + r"/Microsoft\.Web/sites/(?P<name>[^/]+)", web.Site, "put"),
        ("web", _RG + r"/Microsoft\.Web/sites/(?P<name>[^/]+)/config/appsettings", web.StringDictionary, "put"),
        ("web", _RG + r"/Microsoft\.Web/sites/(?P<name>[^/]+)/config/appsettings/list", None, "post"),
        ("web", _RG + r"/Microsoft\.Web/sites/(?P<name>[^/]+)/host/default/listkeys", None, "post"),
        ("storage", _ACCOUNT, storage.StorageAccountCreateParameters, "put"),
        ("storage", _ACCOUNT + r"/blobServices/default/containers/(?P<name>[^/]+)", storage.BlobContainer, "put"),
        ("storage", _ACCOUNT + r"/queueServices/default/queues/(?P<name>[^/]+)", storage.StorageQueue, "put"),
        ("authorization", r"(?P<scope>/subscriptions/.+)/providers/Microsoft\.Authorization/roleAssignments/(?P<name>[^/]+)",
         auth.RoleAssignmentCreateParameters, "put"),
        ("eventgrid", r"(?P<scope>/subscriptions/.+)/providers/Microsoft\.EventGrid/eventSubscriptions/(?P<name>[^/]+)",
         grid.EventSubscription, "put"),
    ]
    return [(api, re.compile(pattern + r"\Z"), model, verb) for api, pattern, model, verb in table]


def api_versions() -> dict[str, str]:
    """The api-version each SDK client sends (its generated default)."""
    from azure.mgmt.authorization import AuthorizationManagementClient
    from azure.mgmt.eventgrid import EventGridManagementClient
    from azure.mgmt.storage import StorageManagementClient
    from azure.mgmt.web import WebSiteManagementClient

    credential = StaticToken()
    auth = AuthorizationManagementClient(credential, "s")
    return {"web": WebSiteManagementClient(credential, "s")._config.api_version,
            "storage": StorageManagementClient(credential, "s")._config.api_version,
            "eventgrid": EventGridManagementClient(credential, "s")._config.api_version,
            "authorization": auth._get_api_version("role_assignments")}


class StaticToken:
    """A credential for the double: a bearer token that never expires (no identity service here)."""

    def get_token(self, *scopes: str, **kw: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("double-token", 4_102_444_800)


# -- the check --------------------------------------------------------------------------------------
def _target(deserializer: Any) -> tuple[str, Any]:
    """What an SDK (typespec) field deserializer builds: ("model", cls) | ("list", t) | ("dict", t) | ("scalar", None)."""
    while isinstance(deserializer, functools.partial):
        name = getattr(deserializer.func, "__name__", "")
        if name == "_deserialize_model":
            return "model", deserializer.args[0]
        if name == "_deserialize_sequence":
            return "list", _target(deserializer.args[0])
        if name == "_deserialize_dict":
            return "dict", _target(deserializer.args[0])
        deserializer = deserializer.args[0] if deserializer.args else None
    return "scalar", None


def check(model: Any, data: Any, where: str) -> list[str]:
    if model is None:
        return []
    if hasattr(model, "_attribute_map"):
        return _check_msrest(model, data, where)
    if not isinstance(data, dict):
        return [f"{where}: expected an object for {model.__name__}"]
    model()  # the SDK computes its field table on first construction
    fields = {rf._rest_name: rf for rf in model._attr_to_rest_field.values()}
    out: list[str] = []
    for key, value in data.items():
        rf = fields.get(key)
        if rf is None:
            out.append(f"{where}: {model.__name__} has no field {key!r}")
            continue
        visibility = rf._visibility or ["create", "update"]
        if not {"create", "update"} & set(visibility):
            out.append(f"{where}.{key}: read-only in {model.__name__}")
        out += _check_value(_target(rf._type), value, f"{where}.{key}")
    return out


def _check_value(target: tuple[str, Any], value: Any, where: str) -> list[str]:
    kind, inner = target
    if value is None or kind == "scalar":
        return []
    if kind == "model":
        return check(inner, value, where)
    if kind == "list":
        return [f"{where}: expected a list"] if not isinstance(value, list) else [
            p for i, v in enumerate(value) for p in _check_value(inner, v, f"{where}[{i}]")]
    return [f"{where}: expected an object"] if not isinstance(value, dict) else [
        p for k, v in value.items() for p in _check_value(inner, v, f"{where}[{k}]")]


def _check_msrest(model: Any, data: Any, where: str) -> list[str]:
    import sys

    if not isinstance(data, dict):
        return [f"{where}: expected an object for {model.__name__}"]
    subtypes = getattr(model, "_subtype_map", None) or {}
    for field, mapping in subtypes.items():
        key = model._attribute_map[field]["key"]
        chosen = mapping.get(data.get(key))
        if chosen:
            model = getattr(sys.modules[model.__module__], chosen)
    module = sys.modules[model.__module__]
    tree: dict[str, Any] = {}
    for attr, spec in model._attribute_map.items():
        parts = re.split(r"(?<!\\)\.", spec["key"])
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part.replace("\\.", "."), {})
        node[parts[-1].replace("\\.", ".")] = (attr, spec["type"])
    out: list[str] = []

    def walk(node: dict[str, Any], value: dict[str, Any], at: str) -> None:
        for key, item in value.items():
            spec = node.get(key)
            if spec is None:
                out.append(f"{at}: {model.__name__} has no field {key!r}")
            elif isinstance(spec, dict):
                walk(spec, item, f"{at}.{key}") if isinstance(item, dict) else out.append(f"{at}.{key}: expected an object")
            else:
                attr, kind = spec
                if (model._validation or {}).get(attr, {}).get("readonly"):
                    out.append(f"{at}.{key}: read-only in {model.__name__}")
                nested = getattr(module, kind.strip("[]{}"), None)
                if nested is not None and hasattr(nested, "_attribute_map"):
                    items = item if kind.startswith("[") else item.values() if kind.startswith("{") else [item]
                    for x in items:
                        out.extend(_check_msrest(nested, x, f"{at}.{key}"))

    walk(tree, data, where)
    for attr, rule in (model._validation or {}).items():
        if rule.get("required") and not rule.get("readonly"):
            path = re.split(r"(?<!\\)\.", model._attribute_map[attr]["key"])
            node: Any = data
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                out.append(f"{where}: {model.__name__} requires {attr!r}")
    return out


# -- the server ---------------------------------------------------------------------------------------
class AzureDouble:
    """``with AzureDouble(tmp_path) as d:`` serves HTTPS on 127.0.0.1; ``d.ca`` is the certificate to trust."""

    def __init__(self, folder: Path) -> None:
        self.routes = _models()
        self.versions = api_versions()
        self.store: dict[str, dict[str, Any]] = {}
        self.published: dict[str, bytes] = {}
        self.violations: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self.ca = folder / "double-cert.pem"
        key = folder / "double-key.pem"
        _self_signed(self.ca, key)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), json_handler(self.authorized))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.endpoint = f"https://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> AzureDouble:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def authorized(self, verb: str, raw: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        if not headers.get("Authorization", "").startswith("Bearer "):
            return 401, {"error": {"code": "AuthenticationFailed", "message": "no bearer token"}}
        return self.handle(verb, raw, body)

    def handle(self, verb: str, raw: str, body: bytes) -> tuple[int, Any]:
        url = urlsplit(raw)
        self.requests.append((verb, url.path))
        if verb == "POST" and url.path.startswith("/scm/") and url.path.endswith("/api/publish"):
            self.published[url.path.split("/")[2]] = body
            return 202, {}
        hits = [(api, model, m) for api, pattern, model, _ in self.routes if (m := pattern.match(url.path))]
        if not hits:
            return self._bad(f"{verb} {url.path}: not a resource type nubes manages")
        api, model, found = hits[0]
        version = dict(parse_qsl(url.query)).get("api-version")
        if version != self.versions[api]:
            return self._bad(f"{verb} {url.path}: api-version {version!r}, the SDK's is {self.versions[api]!r}")
        data = json.loads(body) if body else None
        if verb in ("PUT", "PATCH") and model is not None:
            from azure.mgmt.web import models as web

            schema = web.SitePatchResource if verb == "PATCH" and model is web.Site else model
            problems = check(schema, data, schema.__name__)
            if problems:
                return self._bad("; ".join(problems))
        with self._lock:
            from tests.deploy.azure_semantics import serve

            return serve(self, verb, url.path, found, data)

    def _bad(self, message: str) -> tuple[int, Any]:
        self.violations.append(message)
        return 400, {"error": {"code": "InvalidRequest", "message": message}}


def _self_signed(cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
