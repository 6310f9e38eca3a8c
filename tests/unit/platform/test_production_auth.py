"""Production: RS256 tokens verified against a JWKS document served by the test; CORS closed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from shared.auth import TokenVerifier
from shared.clock import MovableClock
from shared.messaging.inproc import InProcessBus
from shared.runtime import build_runtime
from shared.settings import Settings
from tests.doubles import QuietHandler, http_server
from tests.unit.platform.toyservice import metadata, platform, toy_app


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, rsa.RSAPrivateKey]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "test-key", "use": "sig", "alg": "RS256"})
    yield from _serve({"keys": [jwk]}, key)


@pytest.fixture
def es256_jwks_server() -> Iterator[tuple[str, ec.EllipticCurvePrivateKey]]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "ec-key", "use": "sig", "alg": "ES256"})
    yield from _serve({"keys": [jwk]}, key)


def _serve(jwks: dict[str, object], key: Any) -> Iterator[tuple[str, Any]]:
    body = json.dumps(jwks).encode()

    class Handler(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

    with http_server(Handler) as base:
        yield f"{base}/jwks.json", key


def _client(tmp_path, **settings_kw) -> TestClient:
    from sqlalchemy import create_engine

    settings = Settings(env="production", amqp_url="amqp://unused/",
                        jwt_secret="a-production-secret-0123456789abcdef", **settings_kw)
    engine = create_engine(f"sqlite:///{tmp_path}/toy.db")
    metadata.create_all(engine)
    rt = build_runtime(name="toy", settings=settings, metadata=metadata, platform=platform,
                       clock=MovableClock(), bus=InProcessBus(), engine=engine)
    return TestClient(toy_app(rt), raise_server_exceptions=False)


def _rs256(key: rsa.RSAPrivateKey, kid: str = "test-key", **claims: object) -> str:
    payload = {"sub": "dr-who", "roles": ["nurse"], "centers": ["north"],
               "exp": datetime.now(UTC) + timedelta(minutes=5)}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


def test_rs256_token_verified_against_jwks(tmp_path, jwks_server):
    url, key = jwks_server
    client = _client(tmp_path, jwt_jwks_url=url)
    ok = client.get("/v1/widgets", headers={"Authorization": f"Bearer {_rs256(key)}"})
    assert ok.status_code == 200
    # production: a token without the centers claim is refused (CONTRACT.md, HTTP conventions)
    unscoped = client.get("/v1/widgets", headers={"Authorization": f"Bearer {_rs256(key, centers=None)}"})
    assert unscoped.status_code == 403 and "centers" in unscoped.json()["detail"]
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = client.get("/v1/widgets", headers={"Authorization": f"Bearer {_rs256(other)}"})
    assert forged.status_code == 401
    expired = _rs256(key, exp=datetime.now(UTC) - timedelta(minutes=1))
    assert client.get("/v1/widgets", headers={"Authorization": f"Bearer {expired}"}).status_code == 401
    unknown_kid = client.get("/v1/widgets", headers={"Authorization": f"Bearer {_rs256(key, 'nope')}"})
    assert unknown_kid.status_code == 401


def test_an_rs256_token_meets_the_same_claim_rules(jwks_server):
    """Without exp, or for another audience, an RS256 token is refused as an HS256 one is."""
    url, key = jwks_server
    verifier = TokenVerifier(Settings(env="test", jwt_jwks_url=url, jwt_audience="hai"))
    assert verifier.verify(_rs256(key, aud="hai")).sub == "dr-who"
    with pytest.raises(jwt.MissingRequiredClaimError):
        verifier.verify(jwt.encode({"sub": "dr-who", "roles": ["nurse"], "aud": "hai"}, key,
                                   algorithm="RS256", headers={"kid": "test-key"}))
    with pytest.raises(jwt.InvalidAudienceError):
        verifier.verify(_rs256(key, aud="other"))


def test_an_es256_token_verified_against_jwks(es256_jwks_server):
    url, key = es256_jwks_server
    verifier = TokenVerifier(Settings(env="test", jwt_jwks_url=url))
    token = jwt.encode({"sub": "dr-ec", "roles": ["nurse"], "exp": datetime.now(UTC) + timedelta(minutes=5)},
                       key, algorithm="ES256", headers={"kid": "ec-key"})
    assert verifier.verify(token).sub == "dr-ec"


def test_an_rs256_token_without_a_key_set_is_refused():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    verifier = TokenVerifier(Settings(env="test", jwt_secret="a-test-secret-of-enough-length-for-hs256"))
    with pytest.raises(jwt.InvalidTokenError, match="^algorithm 'RS256' not accepted$"):
        verifier.verify(_rs256(key))


def test_cors_is_closed_by_default(tmp_path):
    client = _client(tmp_path)
    r = client.options("/v1/widgets", headers={"Origin": "https://evil.example",
                                               "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in r.headers
    r = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_cors_opens_only_to_configured_origins(tmp_path):
    client = _client(tmp_path, cors_origins=["https://dashboard.hospital.example"])
    ok = client.get("/healthz", headers={"Origin": "https://dashboard.hospital.example"})
    assert ok.headers.get("access-control-allow-origin") == "https://dashboard.hospital.example"
    bad = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in bad.headers
