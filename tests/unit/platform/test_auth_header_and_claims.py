"""The `Authorization` header must use the Bearer scheme, and a token must carry `exp`; and an
Idempotency-Key belongs to its caller: another caller's same key is another request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from fastapi.testclient import TestClient

from shared.auth import TokenVerifier, mint_token
from shared.clock import MovableClock
from shared.settings import DEV_JWT_SECRET, Settings
from tests.factories import T0
from tests.helpers import auth
from tests.unit.platform.toyservice import toy_app, toy_runtime


@pytest.fixture
def client(tmp_path):
    runtime = toy_runtime(tmp_path)
    with TestClient(toy_app(runtime), raise_server_exceptions=False) as c:
        yield c


def _token() -> str:
    return mint_token("nina", ["nurse"], secret=DEV_JWT_SECRET)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_bearer_scheme_is_accepted_in_any_case(client, scheme):
    r = client.get("/v1/widgets", headers={"Authorization": f"{scheme} {_token()}"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("header", ["Basic {t}", "Token {t}", "JWT {t}", "Bearerx {t}", "{t}",
                                    "Bearer", "Bearer    "])
def test_a_valid_token_under_another_scheme_is_401(client, header):
    r = client.get("/v1/widgets", headers={"Authorization": header.format(t=_token())})
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")


def _signed(claims: dict) -> str:
    return jwt.encode(claims, DEV_JWT_SECRET, algorithm="HS256")


def test_a_token_without_exp_is_refused_by_the_verifier():
    verifier = TokenVerifier(Settings(env="test"), clock=MovableClock(T0))
    forever = _signed({"sub": "nina", "roles": ["nurse"], "iat": T0})
    with pytest.raises(jwt.InvalidTokenError):
        verifier.verify(forever)
    # the same token with an exp is fine: exp is what was missing
    assert verifier.verify(_signed({"sub": "nina", "roles": ["nurse"], "iat": T0,
                                    "exp": T0 + timedelta(hours=1)})).sub == "nina"


def test_a_token_without_exp_is_401(client):
    forever = _signed({"sub": "nina", "roles": ["nurse"], "iat": datetime.now(UTC)})
    r = client.get("/v1/widgets", headers={"Authorization": f"Bearer {forever}"})
    assert r.status_code == 401, r.text
    assert "exp" in r.json()["detail"]


def test_an_idempotency_key_is_scoped_to_its_caller(client):
    """Two nurses who happen to pick the same key make two requests, not a replay or a clash."""
    nina = {**auth("nurse", sub="nina"), "Idempotency-Key": "shared-key"}
    omar = {**auth("nurse", sub="omar"), "Idempotency-Key": "shared-key"}
    first = client.post("/v1/widgets", json={"name": "nina's", "volume_ml": 1}, headers=nina)
    other = client.post("/v1/widgets", json={"name": "omar's", "volume_ml": 2}, headers=omar)
    assert first.status_code == other.status_code == 201, (first.text, other.text)
    assert other.json()["name"] == "omar's" and other.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in other.headers
    # the same body under the same key by another caller is not a replay of the first answer
    same = client.post("/v1/widgets", json={"name": "nina's", "volume_ml": 1},
                       headers={**auth("nurse", sub="pat"), "Idempotency-Key": "shared-key"})
    assert same.status_code == 409 and "exists" in same.json()["detail"], same.text
    # while the first caller's own repeat is
    again = client.post("/v1/widgets", json={"name": "nina's", "volume_ml": 1}, headers=nina)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
