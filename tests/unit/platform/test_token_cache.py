"""A verified bearer token is trusted again until it expires, for at most a minute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from shared import auth
from shared.auth import TokenVerifier, mint_token
from shared.clock import MovableClock
from shared.settings import Settings
from tests.factories import T0

SECRET = "a-test-secret-of-enough-length-for-hs256"


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(T0)


@pytest.fixture
def verifier(monkeypatch: pytest.MonkeyPatch, clock: MovableClock) -> tuple[TokenVerifier, list[str]]:
    v = TokenVerifier(Settings(jwt_secret=SECRET), clock)
    checked: list[str] = []
    signed = v._verify_signed

    def counting(token: str, now: float) -> tuple[auth.Principal, float]:
        checked.append(token)
        return signed(token, now)

    monkeypatch.setattr(v, "_verify_signed", counting)
    return v, checked


def test_the_same_token_is_checked_once(verifier: tuple[TokenVerifier, list[str]]) -> None:
    v, checked = verifier
    token = mint_token("nurse-1", ["nurse"], secret=SECRET, now=T0)
    first, second = v.verify(token), v.verify(token)
    assert first == second and first.sub == "nurse-1" and first.roles == {"nurse"}
    assert len(checked) == 1


def test_an_expired_token_is_refused_even_after_it_was_trusted(
        verifier: tuple[TokenVerifier, list[str]], clock: MovableClock) -> None:
    v, _ = verifier
    token = mint_token("nurse-1", ["nurse"], secret=SECRET, ttl=timedelta(seconds=1), now=T0)
    v.verify(token)
    clock.advance(seconds=0.99)
    v.verify(token)
    clock.advance(seconds=0.01)
    with pytest.raises(jwt.ExpiredSignatureError):
        v.verify(token)


def test_a_token_is_judged_by_the_verifiers_clock_not_by_the_wall_clock(clock: MovableClock) -> None:
    v = TokenVerifier(Settings(jwt_secret=SECRET), clock)
    years_ago = datetime(2001, 1, 1, tzinfo=UTC)
    clock.set(years_ago)
    old = mint_token("nurse-1", ["nurse"], secret=SECRET, now=years_ago)
    assert v.verify(old).sub == "nurse-1"  # expired long ago on the wall clock
    with pytest.raises(jwt.ImmatureSignatureError):  # issued in the verifier's future
        v.verify(mint_token("nurse-1", ["nurse"], secret=SECRET, now=years_ago + timedelta(hours=1)))
    wall = TokenVerifier(Settings(jwt_secret=SECRET))  # the services' and production's verifier
    with pytest.raises(jwt.ExpiredSignatureError):
        wall.verify(old)


def test_trust_lasts_a_minute_at_most(verifier: tuple[TokenVerifier, list[str]],
                                      clock: MovableClock) -> None:
    v, checked = verifier
    token = mint_token("nurse-1", ["nurse"], secret=SECRET, now=T0)
    v.verify(token)
    clock.advance(seconds=auth.VERIFIED_TOKEN_TTL_S - 1)
    v.verify(token)
    assert len(checked) == 1
    clock.advance(seconds=2)
    v.verify(token)
    assert len(checked) == 2


def test_a_bad_token_is_never_trusted(verifier: tuple[TokenVerifier, list[str]]) -> None:
    v, checked = verifier
    forged = mint_token("nurse-1", ["admin"], secret="another-secret-of-enough-length-1234", now=T0)
    for _ in range(2):
        with pytest.raises(jwt.InvalidSignatureError):
            v.verify(forged)
    assert len(checked) == 2 and not v._verified
