"""The `centers` claim (CONTRACT.md, HTTP conventions): a list of centre codes or `["*"]`;
without it a token sees every centre, unless `HAI_CENTERS_CLAIM_REQUIRED` (on by default, and
always, in production) makes it a 403."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jwt
import pytest
from fastapi import HTTPException

from shared.auth import TokenVerifier, authenticate, mint_token
from shared.clock import MovableClock
from shared.errors import Forbidden, NotFound
from shared.scoping import CenterScope
from shared.settings import DEV_JWT_SECRET, Settings
from tests.factories import T0
from tests.helpers import run_async


def _verifier(**settings: Any) -> TokenVerifier:
    return TokenVerifier(Settings(env="test", **settings), clock=MovableClock(T0))


def _token(**claims: Any) -> str:
    body = {"sub": "nina", "roles": ["nurse"], "iat": T0, "exp": T0 + timedelta(hours=1), **claims}
    return jwt.encode(body, DEV_JWT_SECRET, algorithm="HS256")


@pytest.mark.parametrize(("claim", "centers"), [
    (["north"], frozenset({"north"})),
    (["north", "south", "north"], frozenset({"north", "south"})),
    (["*"], None),
    (["north", "*"], None),
    ([], frozenset()),
])
def test_the_claim_names_the_centres_or_every_one(claim: list[str], centers: Any) -> None:
    principal = _verifier().verify(_token(centers=claim))
    assert principal.centers == centers
    assert principal.centers_claimed


@pytest.mark.parametrize("claim", ["north", {"north": 1}, [1], [""], ["  "], [None],
                                   ["x" * 101], ["a\x00b"], None])
def test_a_claim_that_is_not_a_list_of_codes_is_an_invalid_token(claim: Any) -> None:
    with pytest.raises(jwt.InvalidTokenError, match="centers"):
        _verifier().verify(_token(centers=claim))


def test_a_token_without_the_claim_sees_every_centre_outside_production() -> None:
    principal = _verifier().verify(_token())
    assert principal.centers is None and not principal.centers_claimed
    assert principal.sees_center("north") and principal.sees_center(None)


def test_a_scoped_principal_sees_only_its_centres() -> None:
    principal = _verifier().verify(_token(centers=["north"]))
    assert principal.sees_center("north")
    assert not principal.sees_center("south") and not principal.sees_center(None)


def test_without_the_claim_authenticate_is_403_when_the_setting_requires_it() -> None:
    verifier = _verifier(centers_claim_required=True)
    with pytest.raises(HTTPException) as caught:
        run_async(authenticate(f"Bearer {_token()}", verifier))
    assert caught.value.status_code == 403 and "centers" in str(caught.value.detail)
    assert run_async(authenticate(f"Bearer {_token(centers=['*'])}", verifier)).centers is None
    assert run_async(authenticate(f"Bearer {_token()}", _verifier())).centers is None


def test_production_requires_the_claim_and_refuses_to_be_told_otherwise() -> None:
    prod = {"env": "production", "jwt_secret": "x" * 40, "amqp_url": "amqp://h/"}
    assert Settings(**prod).centers_claim_enforced
    assert Settings(**prod, centers_claim_required=True).centers_claim_enforced
    with pytest.raises(ValueError, match="HAI_CENTERS_CLAIM_REQUIRED"):
        Settings(**prod, centers_claim_required=False)
    assert not Settings(env="development").centers_claim_enforced
    assert Settings(env="development", centers_claim_required=True).centers_claim_enforced


def test_mint_token_writes_the_claim_only_when_given() -> None:
    bare = jwt.decode(mint_token("a", ["nurse"], secret=DEV_JWT_SECRET),
                      options={"verify_signature": False})
    assert "centers" not in bare
    scoped = jwt.decode(mint_token("a", ["nurse"], secret=DEV_JWT_SECRET, centers=["north"]),
                        options={"verify_signature": False})
    assert scoped["centers"] == ["north"]


def test_a_scope_refuses_to_write_elsewhere_with_403_and_hides_with_404() -> None:
    north = CenterScope(frozenset({"north"}))
    north.require("north")
    with pytest.raises(Forbidden):
        north.require("south")
    with pytest.raises(Forbidden):
        north.require(None)  # leaving the centre out would reach every centre
    CenterScope(None).require(None)
    with pytest.raises(NotFound, match="no pump X"):
        north.visible_or_404("south", "no pump X")
    assert north.visible(["north", "south", None]) == ["north"]
