"""shared/auth.py without HTTP: the token verifier's claims at their boundaries, the cache
bound, what a minted token holds, and the 401/403 answers word for word (`make mutation`
found boundaries and answers no test pinned)."""

from __future__ import annotations

import time
import typing
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient

from shared import auth
from shared.auth import (
    CurrentUser,
    Principal,
    TokenVerifier,
    authenticate,
    mint_token,
    require_roles,
    roles_dep,
)
from shared.clock import MovableClock
from shared.settings import Settings, get_settings
from tests.helpers import run_async

SECRET = "a-test-secret-of-enough-length-for-hs256"
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
NOW_S = T0.timestamp()


def _verifier(**settings: Any) -> TokenVerifier:
    return TokenVerifier(Settings(**{"jwt_secret": SECRET, **settings}), MovableClock(T0))


def _signed(claims: dict[str, Any], secret: str = SECRET, **kw: Any) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", **kw)


def _claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "nina", "roles": ["nurse"], "exp": NOW_S + 60, **extra}


def _refusal(token: str, verifier: TokenVerifier | None = None) -> tuple[type[Exception], str]:
    with pytest.raises(jwt.InvalidTokenError) as exc:
        (verifier or _verifier()).verify(token)
    return type(exc.value), str(exc.value)


def test_a_token_expires_at_its_exp_exactly() -> None:
    assert _verifier().verify(_signed(_claims(exp=NOW_S + 1))) == Principal("nina", frozenset({"nurse"}))
    assert _refusal(_signed(_claims(exp=NOW_S))) == (jwt.ExpiredSignatureError, "Signature has expired")


def test_nbf_and_iat_are_valid_from_their_second_on() -> None:
    assert _verifier().verify(_signed(_claims(nbf=NOW_S, iat=NOW_S))).sub == "nina"
    assert _refusal(_signed(_claims(nbf=NOW_S + 1))) \
        == (jwt.ImmatureSignatureError, "The token is not yet valid (nbf)")
    assert _refusal(_signed(_claims(iat=NOW_S + 1))) \
        == (jwt.ImmatureSignatureError, "The token is not yet valid (iat)")


@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", [True, "soon", [1]])
def test_a_time_claim_must_be_a_number(name: str, value: Any) -> None:
    token = _signed(_claims(**{name: value}))
    assert _refusal(token)[1] == f"the {name} claim must be a number"


def test_a_time_claim_may_be_a_float() -> None:
    assert _verifier().verify(_signed(_claims(exp=NOW_S + 0.5, iat=NOW_S - 0.5))).sub == "nina"


@pytest.mark.parametrize(("roles", "accepted"), [
    (["nurse", "admin"], frozenset({"nurse", "admin"})), ([], frozenset()), (None, frozenset())])
def test_the_roles_claim(roles: Any, accepted: frozenset[str]) -> None:
    assert _verifier().verify(_signed(_claims(roles=roles))).roles == accepted


def test_a_token_without_roles_has_none() -> None:
    claims = _claims()
    del claims["roles"]
    assert _verifier().verify(_signed(claims)) == Principal("nina", frozenset())


@pytest.mark.parametrize("roles", ["nurse", ["nurse", 7], {"nurse": True}])
def test_roles_must_be_a_list_of_strings(roles: Any) -> None:
    assert _refusal(_signed(_claims(roles=roles))) \
        == (jwt.InvalidTokenError, "roles claim must be a list of strings")


def test_a_numeric_subject_is_read_as_text() -> None:
    token = jwt.encode(_claims(sub="42"), SECRET, algorithm="HS256")
    assert _verifier().verify(token).sub == "42"


def test_an_unsigned_or_foreign_algorithm_is_refused() -> None:
    unsigned = jwt.encode(_claims(), None, algorithm="none")
    assert _refusal(unsigned) == (jwt.InvalidTokenError, "algorithm 'none' not accepted")
    hs512 = jwt.encode(_claims(), SECRET * 2, algorithm="HS512")
    assert _refusal(hs512) == (jwt.InvalidTokenError, "algorithm 'HS512' not accepted")


def test_without_a_secret_no_hs256_token_passes() -> None:
    verifier = _verifier(jwt_secret="")
    assert _refusal(_signed(_claims()), verifier) == (jwt.InvalidTokenError, "algorithm 'HS256' not accepted")


def test_the_audience_is_checked_when_configured() -> None:
    verifier = _verifier(jwt_audience="hai")
    assert verifier.verify(_signed(_claims(aud="hai"))).sub == "nina"
    assert _refusal(_signed(_claims(aud="other")), verifier)[0] is jwt.InvalidAudienceError


def test_the_trusted_tokens_are_forgotten_past_the_cache_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "VERIFIED_TOKEN_CACHE_SIZE", 3)
    verifier = _verifier()
    tokens = [_signed(_claims(sub=f"u{i}")) for i in range(4)]
    for token in tokens[:3]:
        verifier.verify(token)
    assert len(verifier._verified) == 3
    verifier.verify(tokens[3])
    assert list(verifier._verified) == [tokens[3]]


def test_trust_ends_at_exp_or_a_minute_after_the_check() -> None:
    verifier = _verifier()
    short, long = _signed(_claims(exp=NOW_S + 30)), _signed(_claims(exp=NOW_S + 3600))
    verifier.verify(short)
    verifier.verify(long)
    assert verifier._verified[short][1] == NOW_S + 30
    assert verifier._verified[long][1] == NOW_S + 60


def test_a_minted_token_holds_its_claims() -> None:
    token = mint_token("nina", ["nurse", "oncall"], secret=SECRET, now=T0)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"sub": "nina", "roles": ["nurse", "oncall"], "iat": int(NOW_S),
                      "exp": int(NOW_S) + 12 * 3600}
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    short = jwt.decode(mint_token("x", [], secret=SECRET, ttl=timedelta(minutes=5), now=T0), SECRET,
                       algorithms=["HS256"], options={"verify_exp": False})
    assert short["exp"] - short["iat"] == 300


def test_a_minted_token_without_a_time_is_issued_now() -> None:
    before = int(datetime.now(UTC).timestamp())
    claims = jwt.decode(mint_token("x", [], secret=SECRET), SECRET, algorithms=["HS256"])
    assert before <= claims["iat"] <= before + 60


def test_admin_has_every_role_and_others_only_theirs() -> None:
    assert Principal("a", frozenset({"admin"})).has_any(("pharmacist",))
    assert Principal("n", frozenset({"nurse", "x"})).has_any(("pharmacist", "nurse"))
    assert not Principal("n", frozenset({"nurse"})).has_any(("pharmacist",))
    assert not Principal("n", frozenset({"nurse"})).has_any(())
    assert Principal("n", frozenset({"nurse"})).has_known_role
    assert not Principal("n", frozenset({"doctor"})).has_known_role


def _answer(header: str, verifier: TokenVerifier | None = None) -> tuple[int, Any, Any]:
    with pytest.raises(HTTPException) as exc:
        run_async(authenticate(header, verifier or _verifier()))
    return exc.value.status_code, exc.value.detail, exc.value.headers


CHALLENGE = {"WWW-Authenticate": 'Bearer realm="hai"'}


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer   ", "Basic abc", "Bearerx abc"])
def test_no_bearer_token_is_401_with_the_challenge(header: str) -> None:
    assert _answer(header) == (401, "missing bearer token", CHALLENGE)


def test_an_expired_token_is_401_token_expired() -> None:
    assert _answer(f"Bearer {_signed(_claims(exp=NOW_S - 1))}") == (401, "token expired", CHALLENGE)


def test_an_invalid_token_is_401_with_the_reason() -> None:
    assert _answer(f"Bearer {_signed(_claims(), secret='another-secret-of-enough-length!!')}") \
        == (401, "invalid token: Signature verification failed", CHALLENGE)


def test_a_token_without_a_known_role_is_403() -> None:
    assert _answer(f"Bearer {_signed(_claims(roles=['doctor']))}") == (
        403, "the token carries no known role; needs one of ['admin', 'biomed', 'nurse', 'oncall', "
             "'oncologist', 'pharmacist', 'service']", None)


def test_a_good_token_with_spaces_around_it_passes() -> None:
    token = _signed(_claims())
    assert run_async(authenticate(f"bearer   {token}  ", _verifier())) \
        == Principal("nina", frozenset({"nurse"}))


def test_require_roles_lets_admin_and_the_roles_through() -> None:
    dependency = require_roles("pharmacist", "oncologist")
    assert dependency.required_roles == ("pharmacist", "oncologist")  # type: ignore[attr-defined]
    pharmacist = Principal("p", frozenset({"pharmacist"}))
    assert run_async(dependency(pharmacist)) is pharmacist
    with pytest.raises(HTTPException) as exc:
        run_async(dependency(Principal("n", frozenset({"nurse"}))))
    assert (exc.value.status_code, exc.value.detail) \
        == (403, "needs one of the roles ['admin', 'oncologist', 'pharmacist']")


def test_roles_dep_names_its_roles_when_called() -> None:
    (_, depends) = typing.get_args(roles_dep("nurse", "biomed"))
    assert depends.dependency.required_roles == ("nurse", "biomed")


def test_a_minted_token_is_issued_in_utc_whatever_the_machines_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # UTC+9: a local naive time would be 9 h ahead
    time.tzset()
    try:
        before = int(datetime.now(UTC).timestamp())
        claims = jwt.decode(mint_token("x", [], secret=SECRET), SECRET, algorithms=["HS256"])
    finally:
        monkeypatch.undo()
        time.tzset()
    assert before <= claims["iat"] <= before + 60


def _bare_app(verifier: TokenVerifier | None) -> FastAPI:
    """An app without the request gate: the route's dependency finds the verifier itself."""
    app = FastAPI()
    if verifier is not None:
        app.state.token_verifier = verifier

    @app.get("/me")
    def me(user: CurrentUser, request: Request) -> list[str]:
        return [user.sub, request.state.actor]

    return app


def test_the_route_dependency_uses_the_apps_verifier() -> None:
    verifier = TokenVerifier(Settings(jwt_secret=SECRET))
    token = mint_token("nina", ["nurse"], secret=SECRET)
    with TestClient(_bare_app(verifier)) as client:
        assert client.get("/me", headers={"Authorization": f"Bearer {token}"}).json() == ["nina", "nina"]


def test_an_app_without_a_verifier_gets_one_from_the_settings() -> None:
    app = _bare_app(None)
    token = mint_token("nina", ["nurse"], secret=get_settings().jwt_secret)
    with TestClient(app) as client:
        assert client.get("/me", headers={"Authorization": f"Bearer {token}"}).json() == ["nina", "nina"]
        first = app.state.token_verifier
        assert isinstance(first, TokenVerifier)
        client.get("/me", headers={"Authorization": f"Bearer {token}"})
        assert app.state.token_verifier is first


def test_the_route_dependency_answers_a_missing_header_with_401() -> None:
    with TestClient(_bare_app(TokenVerifier(Settings(jwt_secret=SECRET)))) as client:
        r = client.get("/me")
    assert (r.status_code, r.json()) == (401, {"detail": "missing bearer token"})
