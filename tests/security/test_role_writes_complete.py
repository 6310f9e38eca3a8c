"""Each role the contract allows on a write completes that write, with a valid body, in a state
where it makes sense: the role matrix walk only proves such a role is not refused (not 401/403);
here every (write, allowed role) pair runs through a service story and must answer 2xx."""

from __future__ import annotations

from typing import Any

import pytest

from shared.auth import ROLES
from tests import helpers
from tests.helpers import auth, test_settings
from tests.security import stories
from tests.security.test_role_matrix import WRITE_MATRIX, _owner


def _allowed(key: tuple[str, str]) -> frozenset[str]:
    return WRITE_MATRIX[key] | {"admin"}


def _cases() -> list[tuple[str, str]]:
    """(service, role) for every role allowed at least one write of the service."""
    return sorted({(_owner(path), role) for (method, path) in WRITE_MATRIX
                   for role in _allowed((method, path))})


@pytest.mark.parametrize("service,role", _cases())
def test_every_write_an_allowed_role_may_make_completes(service: str, role: str, tmp_path) -> None:
    harness, bus = helpers.start(service, test_settings(tmp_path))
    done: set[tuple[str, str]] = set()

    def call(method: str, template: str, path: str, body: Any) -> Any:
        allowed = _allowed((method, template))
        # this role where the contract lets it; else the first role that may (the story goes on)
        actor = role if role in allowed else sorted(allowed - {"admin"} or {"admin"})[0]
        r = harness.client.request(method, path, json=body, headers=auth(actor, sub=f"{actor}-1"))
        assert r.status_code in (200, 201), f"{method} {path} as {actor}: {r.status_code} {r.text}"
        if actor == role:
            done.add((method, template))
        return r.json()

    stories.STORIES[service](harness, bus, call)
    expected = {key for key in WRITE_MATRIX if _owner(key[1]) == service and role in _allowed(key)}
    assert expected <= done, f"{role} never made {sorted(expected - done)}"


def test_the_cases_cover_every_role_of_the_matrix() -> None:
    roles = {role for _, role in _cases()}
    assert roles == {r for allowed in WRITE_MATRIX.values() for r in allowed} | {"admin"}
    assert roles <= set(ROLES)
