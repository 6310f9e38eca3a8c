"""A correctly signed token with no known role reads nothing (CONTRACT, HTTP conventions: "Token
without the needed role, or without any known role (even for reads): 403").

Every route of every service's OpenAPI is walked with three such tokens: no `roles` claim,
`roles: []`, and only roles the system does not know. The dashboard refuses to sign such a
token in, and treats such a session cookie as no session."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from services.dashboard.session import COOKIE
from shared.settings import DEV_JWT_SECRET
from tests.factories import T0
from tests.helpers import auth, start_service, test_settings
from tests.security.test_role_matrix import _concrete, _routes
from tests.unit.dashboard.fakes import FakeApis, client, login_token


def _signed(secret: str = DEV_JWT_SECRET, now: datetime | None = None, **claims: Any) -> str:
    issued = now or datetime.now(UTC)
    return jwt.encode({"sub": "nobody", "iat": issued, "exp": issued + timedelta(hours=1), **claims},
                      secret, algorithm="HS256")


def _detail(body: dict[str, Any]) -> str:
    """A problem's detail, or an OperationOutcome's diagnostics (the FHIR routes)."""
    if body.get("resourceType") == "OperationOutcome":
        return str(body["issue"][0]["diagnostics"])
    return str(body["detail"])


ROLELESS = {
    "no roles claim": {},
    "empty roles": {"roles": []},
    "unknown roles only": {"roles": ["janitor", "Admin", "nurse "]},
}


@pytest.fixture(scope="module", params=["inventory", "scheduling", "alerts"])
def service(request, tmp_path_factory):
    return start_service(request.param, test_settings(tmp_path_factory.mktemp(request.param)))


def test_a_token_without_a_known_role_is_refused_on_every_route(service):
    client_ = service.client
    routes = _routes(client_)
    assert routes
    failures = []
    for label, claims in ROLELESS.items():
        headers = {"Authorization": f"Bearer {_signed(**claims)}"}
        for method, path, _ in routes:
            r = client_.request(method, _concrete(path), json={}, headers=headers)
            if r.status_code != 403:
                failures.append(f"{method} {path} with {label} → {r.status_code}")
            elif "no known role" not in _detail(r.json()):
                failures.append(f"{method} {path} with {label}: detail {_detail(r.json())!r}")
    assert not failures, "\n".join(failures)


def test_the_health_and_metrics_routes_stay_open_and_a_known_role_still_reads(service):
    headers = {"Authorization": f"Bearer {_signed(roles=[])}"}
    for path in ("/healthz", "/readyz", "/metrics"):
        assert service.client.get(path, headers=headers).status_code == 200, path
    # one known role among unknown ones is enough to read
    path = {"inventory": "/v1/pumps", "scheduling": "/v1/therapies", "alerts": "/v1/alerts"}
    mixed = {"Authorization": f"Bearer {_signed(roles=['janitor', 'nurse'])}"}
    assert service.client.get(path[service.name], headers=mixed).status_code == 200
    assert service.client.get(path[service.name], headers=auth("pharmacist")).status_code == 200


@pytest.mark.parametrize("label", list(ROLELESS))
def test_the_dashboard_refuses_to_sign_in_a_token_without_a_known_role(label):
    secret = "a-real-production-secret-of-enough-length-1234"
    fake = FakeApis()
    c = client(fake, env="production", jwt_secret=secret, amqp_url="amqp://x/")
    c.base_url = httpx.URL("https://testserver")  # production cookies are Secure
    refused = c.post("/login", data={"token": _signed(secret, now=T0, **ROLELESS[label]),
                                     "csrf_token": login_token(c)})
    assert refused.status_code == 401
    assert "carries no role the HAI services know" in refused.text
    assert COOKIE not in refused.cookies
    assert not fake.calls


def test_the_dashboard_treats_a_roleless_session_cookie_as_no_session():
    fake = FakeApis()
    c = client(fake)
    c.cookies.set(COOKIE, _signed(now=T0, roles=["janitor"]))
    response = c.get("/worklist")
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    assert not fake.calls
