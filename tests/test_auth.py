"""Authentication at the HTTP edge: no valid token, no data, and no hints why."""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any, Callable

import jwt
import pytest

from server.auth import issue_dev_token
from server.settings import Settings, SettingsError
from tests import clock
from tests.conftest import Api

QUERY = "{ viewer { user { email } } }"
OWNER = "owner@northwind.example"


async def _status_and_body(api: Api, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    r = await api.http.post("/graphql", json={"query": QUERY}, headers=headers)
    return r.status_code, r.json()


async def test_a_request_without_a_token_is_refused_with_401(ro_api: Api) -> None:
    status, body = await _status_and_body(ro_api, None)
    assert status == 401
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert body["data"] is None


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda s, uid: "not-a-jwt", id="malformed"),
        pytest.param(
            lambda s, uid: jwt.encode({"sub": str(uid), "roles": ["SUPPORT"], "exp": int(time.time()) - 10}, s.jwt_secret, algorithm="HS256"),
            id="expired",
        ),
        pytest.param(
            lambda s, uid: jwt.encode({"sub": str(uid), "roles": ["SUPPORT"], "exp": int(time.time()) + 60}, "another-secret-of-the-same-length-0123456789abcdef", algorithm="HS256"),
            id="wrongly-signed",
        ),
        pytest.param(
            lambda s, uid: jwt.encode({"sub": str(uid), "roles": ["SUPPORT"], "exp": int(time.time()) + 60}, None, algorithm="none"),  # type: ignore[arg-type]  # "none" takes no key; PyJWT types one
            id="unsigned-alg-none",
        ),
        pytest.param(
            lambda s, uid: jwt.encode({"sub": "999999", "roles": ["SUPPORT"], "exp": int(time.time()) + 60}, s.jwt_secret, algorithm="HS256"),
            id="unknown-user",
        ),
        pytest.param(
            lambda s, uid: jwt.encode({"sub": str(uid), "roles": ["SUPPORT"]}, s.jwt_secret, algorithm="HS256"),
            id="no-expiry",
        ),
    ],
)
async def test_bad_tokens_are_refused_alike(ro_api: Api, make: Callable[[Settings, int], str]) -> None:
    uid = ro_api.ids["support@revampd.example"]
    status, body = await _status_and_body(ro_api, make(ro_api.settings, uid))
    assert status == 401
    assert body["errors"] == [{"message": "Authentication required.", "extensions": {"code": "UNAUTHENTICATED"}}]


async def test_a_token_claiming_another_partner_is_refused(ro_api: Api) -> None:
    """The tenant comes only from the token, and the token must match the user."""
    bluebird_owner = ro_api.ids["owner@bluebird.example"]
    northwind_owner = ro_api.ids[OWNER]
    # Bluebird's partner id, taken from its owner's real token.
    bluebird_org = jwt.decode(ro_api.tokens["owner@bluebird.example"], options={"verify_signature": False})["org"]
    forged = issue_dev_token(ro_api.settings, northwind_owner, int(bluebird_org), ["PARTNER_ADMIN"])
    status, _ = await _status_and_body(ro_api, forged)
    assert status == 401
    assert bluebird_owner != northwind_owner


async def test_a_token_cannot_grant_roles_the_user_does_not_have(ro_api: Api) -> None:
    claims = jwt.decode(ro_api.tokens[OWNER], options={"verify_signature": False})
    forged = issue_dev_token(ro_api.settings, int(claims["sub"]), int(claims["org"]), ["SUPPORT"])
    status, _ = await _status_and_body(ro_api, forged)
    assert status == 401
    member = jwt.decode(ro_api.tokens["member@northwind.example"], options={"verify_signature": False})
    as_admin = issue_dev_token(ro_api.settings, int(member["sub"]), int(member["org"]), ["PARTNER_MEMBER", "PARTNER_ADMIN"])
    r = await ro_api.http.post(
        "/graphql", json={"query": "{ viewer { roles } }"}, headers={"Authorization": f"Bearer {as_admin}"}
    )
    assert r.json()["data"]["viewer"]["roles"] == ["PARTNER_MEMBER"]


async def test_a_valid_token_answers_the_viewer(ro_api: Api) -> None:
    status, body = await _status_and_body(ro_api, ro_api.tokens[OWNER])
    assert status == 200
    assert body["data"]["viewer"]["user"]["email"] == OWNER


def test_algorithms_come_from_settings_and_rs256_needs_a_key() -> None:
    with pytest.raises(SettingsError, match="RS256 needs"):
        Settings.from_env({"JWT_ALGORITHMS": "RS256"})
    with pytest.raises(SettingsError, match="JWT_ALGORITHMS"):
        Settings.from_env({"JWT_ALGORITHMS": "none"})


async def test_graphiql_is_served_without_a_token(ro_api: Api) -> None:
    r = await ro_api.http.get("/graphql", headers={"Accept": "text/html"})
    assert r.status_code == 200
    assert "graphiql" in r.text.lower()


async def test_health_and_readiness(ro_api: Api) -> None:
    assert (await ro_api.http.get("/healthz")).json() == {"status": "ok"}
    ready = await ro_api.http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "ok"


async def test_rs256_tokens_verify_with_the_configured_public_key_only(ro_api: Api) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from server.auth import AuthError, TokenVerifier

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    settings = Settings.from_env({"JWT_ALGORITHMS": "RS256", "JWT_PUBLIC_KEY": public_pem})
    verifier = TokenVerifier(settings)
    claims = {"sub": "1", "org": "1", "roles": ["PARTNER_ADMIN"], "exp": int(time.time()) + 60}
    assert verifier.verify(jwt.encode(claims, key, algorithm="RS256")).user_id == 1
    # An HS256 token "signed" with the public key must not pass (algorithm confusion).
    import base64
    import hashlib
    import hmac
    import json

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = b64(hmac.new(public_pem.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    with pytest.raises(AuthError):
        verifier.verify(f"{head}.{body}.{sig}")


async def test_each_request_logs_one_line_with_id_and_operation(ro_api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="revampd.request")
    r = await ro_api.http.post(
        "/graphql",
        json={"query": "query WhoAmI { viewer { roles } }", "operationName": "WhoAmI"},
        headers={"Authorization": f"Bearer {ro_api.tokens[OWNER]}", "X-Request-ID": "req-123"},
    )
    assert r.headers["x-request-id"] == "req-123"
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "revampd.request"]
    assert len(lines) == 1
    assert "request_id=req-123" in lines[0] and "operation=WhoAmI" in lines[0] and "status=200" in lines[0]
    assert f"user={ro_api.ids[OWNER]}" in lines[0]


async def test_deep_queries_are_refused(ro_api: Api) -> None:
    deep = "{ viewer { " + "partner { revampdConnection { " * 8 + "id" + " } }" * 8 + " } }"
    errors = await ro_api.errors(deep, as_=OWNER)
    assert "exceeds maximum operation depth" in errors[0]["message"]


async def test_graphiql_and_introspection_can_be_switched_off(ro_api: Api) -> None:
    import dataclasses

    import httpx

    from server.app import create_app

    settings = dataclasses.replace(ro_api.settings, graphiql=False, introspection=False)
    app: Any = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        assert (await http.get("/graphql", headers={"Accept": "text/html"})).status_code == 404
        r = await http.post(
            "/graphql",
            json={"query": "{ __schema { types { name } } }"},
            headers={"Authorization": f"Bearer {ro_api.tokens[OWNER]}"},
        )
        assert "introspection has been disabled" in r.json()["errors"][0]["message"].lower()
    await app.app.state.revampd.db.dispose()


def test_rs256_tokens_verify_against_a_jwks_endpoint() -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    from server.auth import AuthError, TokenVerifier

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwks = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(jwks)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/jwks.json"
        verifier = TokenVerifier(Settings.from_env({"JWT_ALGORITHMS": "RS256", "JWT_JWKS_URL": url}))
        claims = {"sub": "5", "roles": ["SUPPORT"], "exp": int(time.time()) + 60}
        token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
        assert verifier.verify(token).user_id == 5
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with pytest.raises(AuthError):
            verifier.verify(jwt.encode(claims, other, algorithm="RS256", headers={"kid": "k1"}))
    finally:
        server.shutdown()


async def test_cors_admits_only_the_configured_dashboard_origin(ro_api: Api) -> None:
    import dataclasses

    import httpx

    from server.app import create_app

    app: Any = create_app(dataclasses.replace(ro_api.settings, cors_origins=("https://dashboard.example",)))
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        ok = await http.options("/graphql", headers={"Origin": "https://dashboard.example", **preflight})
        other = await http.options("/graphql", headers={"Origin": "https://evil.example", **preflight})
    assert ok.headers["access-control-allow-origin"] == "https://dashboard.example"
    assert "access-control-allow-origin" not in other.headers
    await app.app.state.revampd.db.dispose()


async def test_cors_admits_the_headers_apollo_and_tracing_send(ro_api: Api) -> None:
    import dataclasses

    import httpx

    from server.app import create_app

    app: Any = create_app(dataclasses.replace(ro_api.settings, cors_origins=("https://dashboard.example",)))
    sent = "authorization, content-type, apollographql-client-name, apollographql-client-version, traceparent"
    preflight = {"Origin": "https://dashboard.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": sent}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        answer = await http.options("/graphql", headers=preflight)
    assert answer.status_code == 200, answer.text
    allowed = {h.strip().lower() for h in answer.headers["access-control-allow-headers"].split(",")}
    assert {"apollographql-client-name", "apollographql-client-version", "traceparent"} <= allowed
    await app.app.state.revampd.db.dispose()


async def test_an_oversized_request_body_is_refused_with_413(ro_api: Api) -> None:
    huge = "x" * (ro_api.settings.max_body_bytes + 1)
    r = await ro_api.http.post(
        "/graphql",
        json={"query": "{ viewer { roles } }", "variables": {"pad": huge}},
        headers={"Authorization": f"Bearer {ro_api.tokens[OWNER]}"},
    )
    assert r.status_code == 413
    assert r.json()["errors"][0]["extensions"]["code"] == "REQUEST_TOO_LARGE"


def test_an_unknown_log_level_is_refused_at_start_naming_the_setting() -> None:
    with pytest.raises(SettingsError, match="LOG_LEVEL must be one of"):
        Settings.from_env({"LOG_LEVEL": "verbose"})
    assert Settings.from_env({"LOG_LEVEL": "warning"}).log_level == "WARNING"
    started = subprocess.run(
        clock.command("server.cli", "serve", "--port", "1"),
        env={**os.environ, "LOG_LEVEL": "verbose"}, capture_output=True, text=True, timeout=120,
    )
    assert started.returncode != 0
    assert "configuration error: LOG_LEVEL must be one of" in started.stderr
    assert "Traceback" not in started.stderr
