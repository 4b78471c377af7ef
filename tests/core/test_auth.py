"""Authentication and authorization: API keys stored hashed, JWTs verified by PyJWT against a JWKS
(a file, and a URL served on loopback), roles and scopes per route, internal routes closed by
default, tenants seeing only their own costs, OpenAPI security schemes, and hostile headers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nubes
from nubes.core.auth import Auth, hash_key, new_key
from nubes.errors import ConfigError
from nubes.testing import Client

ISSUER, AUDIENCE = "https://login.example.test/", "sales-api"
ADMIN_KEY, READER_KEY, ACME_KEY = new_key(), new_key(), new_key()
KEYS = {
    hash_key(ADMIN_KEY): {"id": "ops", "roles": ["admin"]},
    hash_key(READER_KEY): {"id": "analyst", "roles": ["reader"], "scopes": ["sales:read"]},
    hash_key(ACME_KEY): {"id": "acme-bot", "roles": ["billing"], "tenant": "acme"},
}


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks(rsa_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    return {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}


@pytest.fixture(scope="module")
def jwks_file(tmp_path_factory: pytest.TempPathFactory, jwks: dict[str, Any]) -> Path:
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps(jwks))
    return path


def token(key: Any, *, kid: str = "k1", alg: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 300, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=alg, headers={"kid": kid})


def make_app(**auth: Any) -> nubes.App:
    app = nubes.App("secure", storage="mem://auth-tests", auth=Auth(**auth) if auth is not None else None)

    @app.get("/public")
    def public(ctx: nubes.Context) -> dict:
        return {"who": ctx.principal.id if ctx.principal else None}

    @app.get("/reports", auth="reader")
    def reports(ctx: nubes.Context) -> dict:
        return {"who": ctx.principal.id, "roles": sorted(ctx.principal.roles)}

    @app.get("/sales", auth={"roles": ["reader"], "scopes": ["sales:read"]})
    def sales(ctx: nubes.Context) -> dict:
        return {"who": ctx.principal.id}

    @app.get("/me", auth=True)
    def me(ctx: nubes.Context) -> dict:
        return {"who": ctx.principal.id, "tenant": ctx.principal.tenant}

    return app


def test_a_new_app_exposes_no_internal_route(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NUBES_AUTH_INTERNAL", raising=False)
    monkeypatch.chdir(tmp_path)
    client = Client(nubes.App("fresh", storage="mem://fresh-auth"))
    for path in ("/_nubes/openapi.json", "/_nubes/catalog", "/_nubes/costs", "/_nubes/models"):
        assert client.get(path).status_code == 401, path


def test_internal_routes_are_closed_by_default_and_say_how_to_open_them() -> None:
    client = Client(make_app())
    for path in ("/_nubes/openapi.json", "/_nubes/catalog", "/_nubes/costs", "/_nubes/quote?path=/public", "/_nubes/models"):
        r = client.get(path)
        assert r.status_code == 401, path
        assert r.headers["content-type"] == "application/problem+json"
        assert "[auth]" in r.json()["detail"] and r.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/public").json() == {"who": None}


def test_api_keys_roles_and_scopes() -> None:
    client = Client(make_app(api_keys=KEYS))
    assert client.get("/_nubes/openapi.json", headers={"x-api-key": ADMIN_KEY}).status_code == 200
    assert client.get("/_nubes/openapi.json", headers={"x-api-key": READER_KEY}).status_code == 403
    assert client.get("/reports", headers={"x-api-key": READER_KEY}).json() == {"who": "analyst", "roles": ["reader"]}
    assert client.get("/reports", headers={"authorization": f"Bearer {READER_KEY}"}).status_code == 200
    assert client.get("/reports", headers={"x-api-key": ACME_KEY}).status_code == 403
    assert client.get("/reports", headers={"x-api-key": ADMIN_KEY}).status_code == 200  # admin satisfies every role
    assert client.get("/sales", headers={"x-api-key": READER_KEY}).status_code == 200
    assert client.get("/reports").status_code == 401
    wrong = client.get("/public", headers={"x-api-key": READER_KEY[:-1] + "x"})
    assert wrong.status_code == 401 and READER_KEY[:-1] not in wrong.text  # wrong credentials fail even on a public route
    assert client.get("/public", headers={"x-api-key": READER_KEY}).json() == {"who": "analyst"}


def test_only_hashes_are_accepted_as_configuration() -> None:
    with pytest.raises(ConfigError, match="store the hash"):
        Auth(api_keys={ADMIN_KEY: {"roles": ["admin"]}})
    with pytest.raises(ConfigError, match="unknown field"):
        Auth(api_keys={hash_key(ADMIN_KEY): {"role": "admin"}})
    with pytest.raises(ConfigError):
        nubes.App("bad-route", storage="mem://x").get("/x", auth={"groups": ["a"]})(lambda ctx: None)


def test_jwt_from_a_jwks_file(rsa_key: rsa.RSAPrivateKey, jwks_file: Path) -> None:
    client = Client(make_app(jwt={"issuer": ISSUER, "audience": AUDIENCE, "jwks": str(jwks_file)}))
    good = token(rsa_key, roles=["reader"], scope="sales:read other", tenant="acme")
    assert client.get("/sales", headers={"authorization": f"Bearer {good}"}).json() == {"who": "user-1"}
    assert client.get("/me", headers={"authorization": f"Bearer {good}"}).json() == {"who": "user-1", "tenant": "acme"}
    assert client.get("/sales", headers={"authorization": f"Bearer {token(rsa_key, roles=['reader'])}"}).status_code == 403
    refused = {
        "expired": token(rsa_key, roles=["reader"], exp=int(time.time()) - 3600),
        "issuer": token(rsa_key, roles=["reader"], iss="https://evil.test/"),
        "audience": token(rsa_key, roles=["reader"], aud="another-api"),
        "no subject": token(rsa_key, roles=["reader"], sub=None),
        "unknown kid": token(rsa_key, kid="k2", roles=["reader"]),
        "other key": token(rsa.generate_private_key(public_exponent=65537, key_size=2048), roles=["reader"]),
        "alg none": jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60, "roles": ["admin"]},
                               None, algorithm="none"),
    }
    public_pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    forged = _hs256_with_public_key(public_pem)
    refused["hs256 with the public key"] = forged
    signed = good.split(".")
    refused["tampered"] = ".".join([signed[0], signed[1][:-2] + "AA", signed[2]])
    for why, bad in refused.items():
        r = client.get("/reports", headers={"authorization": f"Bearer {bad}"})
        assert r.status_code == 401, why
        assert r.headers["content-type"] == "application/problem+json", why


def _hs256_with_public_key(public_pem: bytes) -> str:
    """The classic algorithm-confusion forgery: HMAC-signed with the RSA public key as the secret."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    claims = b64(json.dumps({"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": int(time.time()) + 60,
                             "roles": ["admin"]}).encode())
    signature = hmac.new(public_pem, f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64(signature)}"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (the client trusts it via SSL_CERT_FILE)."""
    from tests.deploy.azure_double import _self_signed

    folder = tmp_path_factory.mktemp("tls")
    _self_signed(folder / "cert.pem", folder / "key.pem")
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture
def jwks_server(jwks: dict[str, Any], tls_files: tuple[Path, Path],
                monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[str]]]:
    """An https JWKS endpoint on loopback: its URL and the paths it was asked for."""
    import ssl

    body = json.dumps(jwks).encode()
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files[0]))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json", hits
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def jwks_url(jwks_server: tuple[str, list[str]]) -> Iterator[str]:
    yield jwks_server[0]
    assert jwks_server[1], "the JWKS URL was never fetched"


def test_a_jwks_url_must_be_https() -> None:
    for url in ("http://login.example.test/jwks.json", "ftp://login.example.test/jwks.json"):
        with pytest.raises(ConfigError, match="https://"):
            Auth(jwt={"issuer": ISSUER, "audience": AUDIENCE, "jwks": url})


def test_unknown_kids_refetch_the_jwks_at_most_once_per_interval(rsa_key: rsa.RSAPrivateKey,
                                                                 jwks_server: tuple[str, list[str]]) -> None:
    url, hits = jwks_server
    app = make_app(jwt={"issuer": ISSUER, "audience": AUDIENCE, "jwks": url})
    client = Client(app)
    assert client.get("/_nubes/openapi.json", headers={"authorization": f"Bearer {token(rsa_key, roles=['admin'])}"}).status_code == 200
    assert len(hits) == 1
    for n in range(8):  # made-up kids: one refetch (a rotation is picked up), then the cached set answers
        r = client.get("/_nubes/openapi.json", headers={"authorization": f"Bearer {token(rsa_key, kid=f'made-up-{n}')}"})
        assert r.status_code == 401 and "kid" in r.json()["detail"]
    assert len(hits) == 2


def test_jwt_from_a_jwks_url_verifies_each_token_once(rsa_key: rsa.RSAPrivateKey, jwks_url: str) -> None:
    app = make_app(jwt={"issuer": ISSUER, "audience": AUDIENCE, "jwks": jwks_url})
    client = Client(app)
    good = token(rsa_key, roles=["admin"])
    for _ in range(3):
        assert client.get("/_nubes/openapi.json", headers={"authorization": f"Bearer {good}"}).status_code == 200
    assert len(app.auth.jwt._cache) == 1  # type: ignore[union-attr]


def test_config_from_nubes_toml_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jwks_file: Path,
                                                rsa_key: rsa.RSAPrivateKey) -> None:
    monkeypatch.delenv("NUBES_AUTH_INTERNAL", raising=False)
    (tmp_path / "jwks.json").write_text(jwks_file.read_text())
    (tmp_path / "nubes.toml").write_text(
        "[auth]\ninternal = \"ops\"\n"
        f"[auth.api_keys.\"{hash_key(READER_KEY)}\"]\nid = \"analyst\"\nroles = [\"ops\"]\n"
        f"[auth.jwt]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks = \"jwks.json\"\n"
        "[auth.routes]\n\"/_nubes/openapi.json\" = false\n"
    )
    (tmp_path / "toml_app.py").write_text("import nubes\napp = nubes.App('t', storage='mem://toml-auth')\n")
    from nubes.core.loader import load_app

    client = Client(load_app(f"{tmp_path / 'toml_app.py'}:app"))
    assert client.get("/_nubes/openapi.json").status_code == 200  # opened per route
    assert client.get("/_nubes/catalog", headers={"x-api-key": READER_KEY}).status_code == 200  # role ops is internal's
    assert client.get("/_nubes/catalog", headers={"authorization": f"Bearer {token(rsa_key, roles=['ops'])}"}).status_code == 200
    monkeypatch.setenv("NUBES_AUTH_INTERNAL", "open")
    client = Client(load_app(f"{tmp_path / 'toml_app.py'}:app"))
    assert client.get("/_nubes/catalog").status_code == 200


def test_auth_false_opens_everything() -> None:
    app = nubes.App("open", storage="mem://open-auth", auth=False)
    assert Client(app).get("/_nubes/catalog").status_code == 200


def test_a_tenant_sees_only_its_own_costs() -> None:
    app = make_app(api_keys=KEYS, routes={"/_nubes/costs": "billing"})
    client = Client(app)
    client.get("/me", headers={"x-api-key": ACME_KEY})
    client.get("/me", headers={"x-api-key": READER_KEY})
    mine = client.get("/_nubes/costs", params={"by": "tenant"}, headers={"x-api-key": ACME_KEY})
    assert mine.status_code == 200, mine.text
    assert {row["tenant"] for row in mine.json()["rows"]} == {"acme"}
    assert client.get("/_nubes/costs", params={"tenant": "globex"}, headers={"x-api-key": ACME_KEY}).status_code == 403
    everyone = client.get("/_nubes/costs", params={"by": "tenant"}, headers={"x-api-key": ADMIN_KEY}).json()
    assert {row["tenant"] for row in everyone["rows"]} >= {"acme"} and len(everyone["rows"]) >= 2


def test_openapi_declares_the_security_schemes_and_requirements() -> None:
    from openapi_spec_validator import validate

    doc = Client(make_app(api_keys=KEYS)).get("/_nubes/openapi.json", headers={"x-api-key": ADMIN_KEY}).json()
    validate(doc)
    assert set(doc["components"]["securitySchemes"]) == {"apiKey", "bearer"}
    assert "security" not in doc["paths"]["/public"]["get"]
    reports = doc["paths"]["/reports"]["get"]
    assert reports["security"] == [{"apiKey": []}, {"bearer": []}] and {"401", "403"} <= set(reports["responses"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["authorization", "x-api-key", "Authorization"]),
       value=st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=300))
def test_hostile_credentials_never_crash(name: str, value: str) -> None:
    client = Client(_FUZZ_APP)
    r = client.get("/reports", headers={name: value})
    assert r.status_code in (401, 403) or (r.status_code == 200 and value.strip() in (READER_KEY, f"Bearer {READER_KEY}"))
    assert r.headers["content-type"] in ("application/problem+json", "application/json")


_FUZZ_APP = make_app(api_keys=KEYS)


class _LetsEveryoneIn:
    def check(self, request: Any, needed: Any) -> None:
        return None


@pytest.mark.parametrize("auth", [_LetsEveryoneIn(), True, "admin", {"api_keys": {}}])
def test_app_refuses_an_auth_that_is_not_an_auth(auth: Any) -> None:
    # such an object used to be dropped silently for [auth] from nubes.toml: whatever it promised went unchecked
    with pytest.raises(ConfigError, match=r"nubes\.core\.auth\.Auth"):
        nubes.App("custom", storage="mem://custom-auth", auth=auth)


def test_an_auth_subclass_is_the_one_that_checks() -> None:
    seen: list[str] = []

    class Audited(Auth):
        def check(self, request: Any, needed: Any) -> Any:
            seen.append(request.path)
            return super().check(request, needed)

    audited = Audited(api_keys=KEYS, default=True)
    app = nubes.App("audited", storage="mem://audited-auth", auth=audited)

    @app.get("/me")
    def me(ctx: nubes.Context) -> dict:
        return {"id": ctx.principal.id}

    client = Client(app)
    assert app.auth is audited
    assert client.get("/me").status_code == 401
    assert client.get("/me", headers={"x-api-key": READER_KEY}).json() == {"id": "analyst"}
    assert seen == ["/me", "/me"]
