"""A verified bearer token is trusted again until it expires, for at most a minute."""

from __future__ import annotations

import time
from datetime import timedelta

import jwt
import pytest

from shared import auth
from shared.auth import TokenVerifier, mint_token
from shared.settings import Settings

SECRET = "a-test-secret-of-enough-length-for-hs256"


@pytest.fixture
def verifier(monkeypatch: pytest.MonkeyPatch) -> tuple[TokenVerifier, list[str]]:
    v = TokenVerifier(Settings(jwt_secret=SECRET))
    checked: list[str] = []
    signed = v._verify_signed

    def counting(token: str) -> tuple[auth.Principal, float]:
        checked.append(token)
        return signed(token)

    monkeypatch.setattr(v, "_verify_signed", counting)
    return v, checked


def test_the_same_token_is_checked_once(verifier: tuple[TokenVerifier, list[str]]) -> None:
    v, checked = verifier
    token = mint_token("nurse-1", ["nurse"], secret=SECRET)
    first, second = v.verify(token), v.verify(token)
    assert first == second and first.sub == "nurse-1" and first.roles == {"nurse"}
    assert len(checked) == 1


def test_an_expired_token_is_refused_even_after_it_was_trusted(
        verifier: tuple[TokenVerifier, list[str]]) -> None:
    v, _ = verifier
    token = mint_token("nurse-1", ["nurse"], secret=SECRET, ttl=timedelta(seconds=1))
    v.verify(token)
    time.sleep(1.2)
    with pytest.raises(jwt.ExpiredSignatureError):
        v.verify(token)


def test_trust_lasts_a_minute_at_most(verifier: tuple[TokenVerifier, list[str]],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    v, checked = verifier
    token = mint_token("nurse-1", ["nurse"], secret=SECRET)
    v.verify(token)
    later = time.time() + auth.VERIFIED_TOKEN_TTL_S + 1
    monkeypatch.setattr(auth.time, "time", lambda: later)
    v.verify(token)
    assert len(checked) == 2


def test_a_bad_token_is_never_trusted(verifier: tuple[TokenVerifier, list[str]]) -> None:
    v, checked = verifier
    forged = mint_token("nurse-1", ["admin"], secret="another-secret-of-enough-length-1234")
    for _ in range(2):
        with pytest.raises(jwt.InvalidSignatureError):
            v.verify(forged)
    assert len(checked) == 2 and not v._verified
