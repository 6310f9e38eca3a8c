"""CSRF: a state-changing request must come from our own origin and carry its session's token."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.dashboard import csrf
from tests.unit.dashboard.fakes import FakeApis, client, login_token, page, session_token, sign_in

TEMPLATES = Path(csrf.__file__).parent / "templates"
PUMP = {"serial_number": "SN-NEW", "model_code": "DEMO-30", "lot_number": "L1",
        "expiry_date": "2030-01-01", "labeled_flow_ml_per_day": 1.0, "status": "in_stock"}
REGISTER = {"udi": "(01)00812345000016(17)301231(10)L1(21)SN-NEW"}
OWN = "http://testserver"


@pytest.fixture
def fake() -> FakeApis:
    fake = FakeApis()
    fake.on("inventory", "POST", "/v1/pumps", PUMP, status=201)
    fake.on("inventory", "GET", "/v1/pumps", page([]))
    fake.on("inventory", "GET", "/v1/pump-models", page([]))
    return fake


def signed_in(fake: FakeApis, sub: str = "ada.admin") -> TestClient:
    """A signed-in client that sends no token unless a test gives one."""
    c = client(fake)
    sign_in(c, sub, ("admin",))
    del c.headers[csrf.HEADER]
    return c


def registered(fake: FakeApis) -> int:
    return len(fake.called("inventory", "POST", "/v1/pumps"))


def test_a_post_without_the_token_is_refused_with_a_plain_page(fake: FakeApis) -> None:
    c = signed_in(fake)
    response = c.post("/stock/register", data=REGISTER, headers={"Origin": OWN})
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert "Request refused" in response.text and "nothing was changed" in response.text
    assert registered(fake) == 0


def test_another_sessions_token_is_refused(fake: FakeApis) -> None:
    mallory = signed_in(fake, "omar.oncologist")
    victim = signed_in(fake)
    response = victim.post("/stock/register", data={**REGISTER, "csrf_token": session_token(mallory)},
                           headers={"Origin": OWN})
    assert response.status_code == 403
    assert registered(fake) == 0


@pytest.mark.parametrize("headers", [
    {"Origin": "http://testserver:8081"},  # another port of the same host: same site, not same origin
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "same-site"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": OWN, "Sec-Fetch-Site": "cross-site"},
])
def test_a_request_from_another_origin_is_refused_even_with_the_token(
        fake: FakeApis, headers: dict[str, str]) -> None:
    c = signed_in(fake)
    response = c.post("/stock/register", data={**REGISTER, "csrf_token": session_token(c)},
                      headers=headers)
    assert response.status_code == 403
    assert registered(fake) == 0


@pytest.mark.parametrize("headers", [
    {"Origin": OWN, "Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": "same-origin"},  # no Origin: the browser still says same-origin
    {"Origin": "HTTP://TESTSERVER:80"},
    {},  # not a browser: the token alone
])
def test_a_good_request_from_the_page_works(fake: FakeApis, headers: dict[str, str]) -> None:
    c = signed_in(fake)
    form = c.get("/stock").text
    found = re.search(r'<form method="post" action="/stock/register"[^>]*><input type="hidden" '
                      r'name="csrf_token" value="([^"]+)">', form)
    assert found and found.group(1) == session_token(c)
    response = c.post("/stock/register", data={**REGISTER, "csrf_token": found.group(1)},
                      headers=headers)
    assert response.status_code == 201, response.text
    assert registered(fake) == 1


def test_the_configured_public_origin_is_our_own(fake: FakeApis) -> None:
    c = client(fake, dashboard_url="https://hai.example.org")  # behind a proxy that ends TLS
    sign_in(c, "ada.admin", ("admin",))
    response = c.post("/stock/register", data=REGISTER, headers={"Origin": "https://hai.example.org"})
    assert response.status_code == 201


def test_htmx_sends_the_token_from_the_body_and_forms_carry_it(fake: FakeApis) -> None:
    alert = {"id": "al1", "kind": "flow_abnormal", "severity": "critical", "status": "firing",
             "summary": "flow", "last_raised_at": "2026-11-02T06:00:00Z"}
    fake.on("alerts", "GET", "/v1/alerts", page([alert]))
    c = signed_in(fake)
    html = c.get("/alerts").text
    token = session_token(c)
    assert f'<body hx-headers=\'{{"X-CSRF-Token": "{token}"}}\'>' in html
    forms = re.findall(r'<form\b[^>]*method="post"[^>]*>(<input[^>]*>)', html)
    # acknowledge twice (the fake answers the alert as firing and as acknowledged), sign out;
    # resolving is a page of its own (it asks for the reason)
    assert len(forms) == 3
    assert all(f'name="csrf_token" value="{token}"' in f for f in forms)


def test_every_post_form_in_the_templates_carries_the_token() -> None:
    forms = 0
    for template in TEMPLATES.glob("*.html"):
        for tag in re.finditer(r"<form\b[^>]*>(.{0,40})", template.read_text(), re.S):
            if re.search(r'method="post"', tag.group(0), re.I):
                forms += 1
                assert tag.group(1).lstrip().startswith("{{ csrf_field("), (template.name, tag.group(0))
    assert forms >= 8


def test_a_route_added_later_is_protected_too(fake: FakeApis) -> None:
    c = signed_in(fake)
    done: list[str] = []
    c.app.post("/new-action")(lambda: done.append("changed"))  # type: ignore[attr-defined]
    assert c.post("/new-action", headers={"Origin": OWN}).status_code == 403
    assert c.post("/new-action", headers={"Origin": OWN, csrf.HEADER: session_token(c)}).status_code == 200
    assert done == ["changed"]


def test_sign_out_needs_the_token(fake: FakeApis) -> None:
    c = signed_in(fake)
    before = c.cookies["hai_session"]
    assert c.post("/logout", headers={"Origin": "http://testserver:9999"}).status_code == 403
    assert c.post("/logout").status_code == 403
    assert c.cookies["hai_session"] == before
    out = c.post("/logout", data={"csrf_token": session_token(c)})
    assert out.status_code == 303 and 'hai_session=""' in out.headers["set-cookie"]


def test_login_csrf_cannot_replace_the_victims_session(fake: FakeApis) -> None:
    c = signed_in(fake)
    before = c.cookies["hai_session"]
    attack = {"sub": "pia.pharmacist", "next": "/worklist"}
    # no pre-session cookie (a cross-site form's first contact), a made-up token, another origin
    assert c.post("/login", data={**attack, "csrf_token": "x"}).status_code == 403
    mallory = client(fake)
    assert c.post("/login", data={**attack, "csrf_token": login_token(mallory)}).status_code == 403
    token = login_token(c)
    assert c.post("/login", data={**attack, "csrf_token": token},
                  headers={"Origin": "http://testserver:8081"}).status_code == 403
    assert c.post("/login", data=attack).status_code == 403
    assert c.cookies["hai_session"] == before
    # the sign-in form itself still works, and its nonce serves once
    response = c.post("/login", data={**attack, "csrf_token": token}, headers={"Origin": OWN})
    assert response.status_code == 303 and c.cookies["hai_session"] != before
    assert csrf.LOGIN_COOKIE not in c.cookies


def test_a_signed_out_post_goes_to_sign_in_not_to_the_api(fake: FakeApis) -> None:
    c = client(fake)
    response = c.post("/stock/register", data=REGISTER, headers={"Origin": OWN})
    assert response.status_code == 303 and response.headers["location"].startswith("/login?next=")
    assert registered(fake) == 0
