"""Every route of every service's OpenAPI: no token, expired, forged or `alg: none` → 401;
a role the contract does not allow → 403; a role it allows → neither.

The expected matrix is written out here from CONTRACT.md (HTTP conventions, "Roles by
default"), not read from the code, so a route that drifts from the contract fails.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from shared.auth import ROLES, mint_token
from shared.settings import DEV_JWT_SECRET
from tests.helpers import start_service, test_settings

PUBLIC = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect",
          "/redoc"}
ANY_ROLE = frozenset(ROLES)
# the reads that are not open to every role: the audit trail is the admin's alone
ADMIN_READS = {"/v1/audit"}

# (method, path template) → roles allowed besides admin; reads (GET) are open to every role
WRITE_MATRIX: dict[tuple[str, str], frozenset[str]] = {
    # inventory
    ("POST", "/v1/pump-models"): frozenset(),
    ("POST", "/v1/pumps"): frozenset({"biomed"}),
    ("POST", "/v1/pumps/{serial}/implant"): frozenset({"biomed", "oncologist"}),
    ("POST", "/v1/pumps/{serial}/explant"): frozenset({"biomed", "oncologist"}),
    ("POST", "/v1/pumps/{serial}/quarantine"): frozenset({"biomed"}),
    ("POST", "/v1/pumps/{serial}/release"): frozenset({"biomed"}),
    ("POST", "/v1/pumps/{serial}/retire"): frozenset({"biomed"}),
    ("POST", "/v1/recalls"): frozenset({"biomed"}),
    # scheduling
    ("POST", "/v1/patients"): frozenset({"nurse", "oncologist"}),
    ("PATCH", "/v1/patients/{mrn}"): frozenset({"nurse", "oncologist"}),
    ("POST", "/v1/therapies"): frozenset({"oncologist"}),
    ("PATCH", "/v1/therapies/{therapy_id}"): frozenset({"oncologist"}),
    ("POST", "/v1/refills"): frozenset({"nurse"}),
    ("POST", "/v1/refills/{refill_id}/entered-in-error"): frozenset({"nurse", "oncologist"}),
    ("PATCH", "/v1/appointments/{appointment_id}"): frozenset({"nurse"}),
    ("POST", "/v1/deliveries/{delivery_id}/status"): frozenset({"pharmacist"}),
    ("PUT", "/v1/centers/{center}/settings"): frozenset(),
    # alerts
    ("POST", "/v1/alerts/{alert_id}/ack"): frozenset({"oncall", "nurse", "oncologist"}),
    ("POST", "/v1/alerts/{alert_id}/resolve"): frozenset({"oncall", "nurse", "oncologist"}),
    ("POST", "/v1/alerts/{alert_id}/snooze"): frozenset({"oncall", "nurse", "oncologist"}),
    ("POST", "/v1/notifications/{notification_id}/seen"): frozenset({"oncall", "nurse", "oncologist"}),
    ("PUT", "/v1/oncall/{center}"): frozenset({"oncall"}),
    ("POST", "/v1/silences"): frozenset({"oncall"}),
}


def _normalise(path: str) -> str:
    """Path parameters named alike whatever the service calls them."""
    path = re.sub(r"/pumps/\{[^}]+\}", "/pumps/{serial}", path)
    path = re.sub(r"/patients/\{[^}]+\}", "/patients/{mrn}", path)
    path = re.sub(r"/therapies/\{[^}]+\}", "/therapies/{therapy_id}", path)
    path = re.sub(r"/appointments/\{[^}]+\}", "/appointments/{appointment_id}", path)
    path = re.sub(r"/deliveries/\{[^}]+\}", "/deliveries/{delivery_id}", path)
    path = re.sub(r"/refills/\{[^}]+\}", "/refills/{refill_id}", path)
    path = re.sub(r"/alerts/\{[^}]+\}", "/alerts/{alert_id}", path)
    path = re.sub(r"/oncall/\{[^}]+\}", "/oncall/{center}", path)
    return path


def _routes(client) -> list[tuple[str, str, str]]:
    spec = client.get("/openapi.json").json()
    out = []
    for path, ops in spec["paths"].items():
        if path in PUBLIC:
            continue
        for method in ops:
            if method.upper() in {"GET", "POST", "PUT", "PATCH", "DELETE"}:
                out.append((method.upper(), path, _normalise(path)))
    return out


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "X-1", path)


def _token(roles: list[str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token('matrix', roles, secret=DEV_JWT_SECRET)}"}


BAD_TOKENS = {
    "expired": lambda: mint_token("m", ["admin"], secret=DEV_JWT_SECRET, ttl=timedelta(seconds=-5)),
    "wrong signature": lambda: mint_token("m", ["admin"],
                                          secret="not-the-secret-0123456789abcdef-0123456789"),
    "alg none": lambda: jwt.encode({"sub": "m", "roles": ["admin"],
                                    "exp": datetime.now(UTC) + timedelta(hours=1)},
                                   None, algorithm="none"),
    "garbage": lambda: "a.b.c",
}


@pytest.fixture(scope="module", params=["inventory", "scheduling", "alerts"])
def service(request, tmp_path_factory):
    return start_service(request.param, test_settings(tmp_path_factory.mktemp(request.param)))


def test_every_route_is_locked_and_follows_the_role_matrix(service):
    client = service.client
    routes = _routes(client)
    assert routes, "no routes found in the OpenAPI document"
    failures = []
    for method, path, key in routes:
        url = _concrete(path)
        r = client.request(method, url, json={})
        if r.status_code != 401:
            failures.append(f"{method} {path} without token → {r.status_code}")
        for label, make in BAD_TOKENS.items():
            r = client.request(method, url, json={}, headers={"Authorization": f"Bearer {make()}"})
            if r.status_code != 401:
                failures.append(f"{method} {path} with {label} token → {r.status_code}")
        if method == "GET" and key in ADMIN_READS:
            allowed = frozenset({"admin"})
        elif method == "GET":
            allowed = ANY_ROLE
        else:
            if (method, key) not in WRITE_MATRIX:
                failures.append(f"{method} {path} is a write the contract's role matrix does not name")
                continue
            allowed = WRITE_MATRIX[(method, key)] | {"admin"}
        for role in ROLES:
            r = client.request(method, url, json={}, headers=_token([role]))
            if role in allowed and r.status_code in (401, 403):
                failures.append(f"{method} {path} as {role} (allowed) → {r.status_code}")
            if role not in allowed and r.status_code != 403:
                failures.append(f"{method} {path} as {role} (not allowed) → {r.status_code}")
            if r.status_code >= 500:
                failures.append(f"{method} {path} as {role} → {r.status_code}")
    assert not failures, "\n".join(failures)


def test_the_matrix_routes_exist(service):
    present = {(m, k) for m, _, k in _routes(service.client)}
    mine = {k for k in WRITE_MATRIX if _owner(k[1]) == service.name}
    assert mine <= present, sorted(mine - present)


def _owner(path: str) -> str:
    if path.startswith(("/v1/pump", "/v1/recalls")):
        return "inventory"
    if path.startswith(("/v1/alerts", "/v1/oncall", "/v1/silences", "/v1/notifications")):
        return "alerts"
    return "scheduling"
