"""The dashboard's pages over faked APIs: what they ask, what they show, how they fail."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from services.dashboard.demo import DEMO_CENTER
from services.dashboard.views import iso_z
from shared.auth import TokenVerifier, mint_token
from shared.clock import MovableClock
from tests.unit.dashboard.fakes import T0, FakeApis, client, login_token, page, settings, sign_in


def appt(id_: str, serial: str, due_hours: float, *, urgency: str, near_empty: bool = False,
         fill_type: str = "saline", empty_hours: float = 200.0,
         delivery_id: str | None = None) -> dict:
    """A scheduled appointment as scheduling answers it, with scheduling's judgements."""
    return {"id": id_, "therapy_id": "t1", "patient_mrn": f"MRN-{serial}", "center": "demo",
            "pump_serial": serial, "fill_type": fill_type,
            "due_at": iso_z(T0 + timedelta(hours=due_hours)), "scheduled_for": None,
            "status": "scheduled", "projected_empty_at": iso_z(T0 + timedelta(hours=empty_hours)),
            "delivery_id": delivery_id, "urgency": urgency, "near_empty": near_empty}


@pytest.fixture
def fake() -> FakeApis:
    return FakeApis()


def test_pages_send_the_browser_to_sign_in_and_back(fake: FakeApis) -> None:
    c = client(fake)
    response = c.get("/alerts/a-1")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Falerts%2Fa-1"
    htmx = c.get("/alerts/table", headers={"HX-Request": "true"})
    assert htmx.headers["HX-Redirect"].startswith("/login?next=")
    assert not fake.calls


def test_dev_sign_in_keeps_the_minted_token_in_an_httponly_lax_cookie(fake: FakeApis) -> None:
    c = client(fake)
    response = c.post("/login", data={"sub": "otto.oncall", "role": ["oncall", "nurse"],
                                      "next": "/alerts/a-1", "csrf_token": login_token(c)})
    assert response.status_code == 303 and response.headers["location"] == "/alerts/a-1"
    cookie = response.headers["set-cookie"]
    assert "hai_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    token = c.cookies["hai_session"]
    principal = TokenVerifier(settings(), MovableClock(T0)).verify(token)
    assert principal.sub == "otto.oncall" and principal.roles == {"oncall", "nurse"}


def test_sign_in_refuses_an_unknown_user_and_an_open_redirect(fake: FakeApis) -> None:
    c = client(fake)
    token = login_token(c)
    assert c.post("/login", data={"sub": "mallory", "role": ["admin"],
                                  "csrf_token": token}).status_code == 400
    usual = c.post("/login", data={"sub": "bea.biomed", "csrf_token": token})
    assert usual.status_code == 303
    assert TokenVerifier(settings(), MovableClock(T0)).verify(c.cookies["hai_session"]).roles == {"biomed"}
    response = c.post("/login", data={"sub": "nora.nurse", "role": ["nurse"],
                                      "next": "//evil.example/x", "csrf_token": login_token(c)})
    assert response.headers["location"] == "/worklist"


def test_production_accepts_only_a_verified_pasted_token(fake: FakeApis) -> None:
    secret = "a-real-production-secret-of-enough-length-1234"
    c = client(fake, env="production", jwt_secret=secret, amqp_url="amqp://x/")
    c.base_url = httpx.URL("https://testserver")  # production cookies are Secure
    form = c.get("/login").text
    assert "identity provider" in form and 'name="sub"' not in form
    token = login_token(c)
    assert c.post("/login", data={"sub": "ada.admin", "role": ["admin"],
                                  "csrf_token": token}).status_code == 401
    forged = mint_token("eve", ["admin"], secret="not-the-secret-" * 3, now=T0)
    refused = c.post("/login", data={"token": forged, "csrf_token": token})
    assert refused.status_code == 401 and "not accepted" in refused.text
    # production: the services refuse a token without the centers claim; so does the sign-in
    unscoped = c.post("/login", data={"token": mint_token("nina", ["nurse"], secret=secret, now=T0),
                                      "csrf_token": token})
    assert unscoped.status_code == 401 and "centers claim" in unscoped.text
    good = mint_token("nina", ["nurse"], secret=secret, now=T0, centers=["north"])
    response = c.post("/login", data={"token": f"Bearer {good}", "csrf_token": token})
    assert response.status_code == 303
    assert "Secure" in response.headers["set-cookie"]


def test_a_demo_user_signs_in_with_its_centres_and_every_call_carries_them(fake: FakeApis) -> None:
    c = client(fake)
    fake.on("scheduling", "GET", "/v1/appointments", page([]))
    sign_in(c)
    verifier = TokenVerifier(settings(), MovableClock(T0))
    assert verifier.verify(c.cookies["hai_session"]).centers == {DEMO_CENTER}
    shown = c.get("/worklist")
    assert f'data-testid="centers">{DEMO_CENTER}<' in shown.text
    assert fake.calls
    for *_, headers in fake.calls:
        token = headers["authorization"].removeprefix("Bearer ")
        assert verifier.verify(token).centers == {DEMO_CENTER}
    c = client(fake)
    sign_in(c, "ada.admin", ("admin",))
    admin = verifier.verify(c.cookies["hai_session"])
    assert admin.centers is None and admin.centers_claimed  # ["*"]: the consortium's admin
    assert 'data-testid="centers">all<' in c.get("/worklist").text


def test_logout_forgets_the_token(fake: FakeApis) -> None:
    c = client(fake)
    sign_in(c)
    response = c.post("/logout")
    assert response.status_code == 303 and 'hai_session=""' in response.headers["set-cookie"]


def test_worklist_orders_overdue_first_and_shows_delivery_and_empty_time(fake: FakeApis) -> None:
    fake.on("scheduling", "GET", "/v1/appointments", page([
        appt("a-later", "SN-LATER", 24 * 6, urgency="later"),
        appt("a-soon", "SN-SOON", 30, urgency="due_soon", fill_type="chemo", delivery_id="ord-1"),
        appt("a-over", "SN-OVER", -20, urgency="overdue", near_empty=True, empty_hours=10),
        appt("a-today", "SN-TODAY", 3, urgency="due_today"),
    ]))
    fake.on("scheduling", "GET", "/v1/deliveries/ord-1",
            {"id": "ord-1", "status": "compounded", "needed_by": iso_z(T0 + timedelta(hours=30))})
    fake.on("scheduling", "GET", "/v1/patients/MRN-SN-OVER",
            {"mrn": "MRN-SN-OVER", "given_name": "Demo", "family_name": "Testperson"})
    c = client(fake)
    sign_in(c)
    response = c.get("/worklist?center=demo")
    assert response.status_code == 200
    html = response.text
    order = [html.index(f'data-serial="{s}"') for s in ("SN-OVER", "SN-TODAY", "SN-SOON", "SN-LATER")]
    assert order == sorted(order)
    assert "Overdue" in html and "Near empty" in html and "Due today" in html
    assert "compounded" in html and "Testperson, Demo" in html
    assert fake.called("scheduling", "GET", "/v1/appointments")[0]["status"] == "scheduled"
    assert fake.called("scheduling", "GET", "/v1/appointments")[0]["center"] == "demo"
    auth = [h["authorization"] for *_, h in fake.calls]
    assert all(a.startswith("Bearer ") for a in auth)
    assert "Verify:" in html


def test_a_service_that_is_down_gives_a_banner_not_a_crash(fake: FakeApis) -> None:
    fake.down.add("scheduling")
    c = client(fake)
    sign_in(c)
    response = c.get("/worklist")
    assert response.status_code == 200
    assert "scheduling service cannot be reached" in response.text
    fake.on("scheduling", "GET", "/v1/appointments",
            lambda r: httpx.Response(500, json={"title": "Internal server error", "detail": "boom"}))
    fake.down.clear()
    broken = c.get("/worklist")
    # in plain words: no status code, no server internals
    assert broken.status_code == 200 and "scheduling service could not do this" in broken.text
    assert "500" not in broken.text and "boom" not in broken.text
    fake.on("scheduling", "POST", "/v1/refills",
            {"title": "Conflict", "status": 409, "detail": "pump SN1 has no active therapy"}, status=409)
    refused = c.post("/refill", data={"pump_serial": "SN1", "performed_at": "2026-11-02T05:30",
                                      "residual_volume_ml": "1", "fill_volume_ml": "30",
                                      "fill_type": "saline"})
    assert refused.status_code == 409 and "no active therapy" in refused.text
    fake.down.add("scheduling")
    unreachable = c.post("/refill", data={"pump_serial": "SN1", "performed_at": "2026-11-02T05:30",
                                          "residual_volume_ml": "1", "fill_volume_ml": "30",
                                          "fill_type": "saline"})
    assert unreachable.status_code == 502 and 'value="SN1"' in unreachable.text


def test_refill_validation_errors_from_the_api_appear_beside_their_fields(fake: FakeApis) -> None:
    fake.on("scheduling", "POST", "/v1/refills", {
        "type": "about:blank", "title": "Unprocessable content", "status": 422,
        "detail": "residual_volume_ml: above the previous fill",
        "errors": [{"field": "residual_volume_ml", "message": "above the previous fill (30 mL)"}]},
        status=422)
    c = client(fake)
    sign_in(c)
    response = c.post("/refill", data={
        "pump_serial": "SN1", "performed_at": "2026-11-02T05:30", "residual_volume_ml": "45",
        "fill_volume_ml": "30", "fill_type": "saline", "appointment_id": "a-1",
        "idempotency_key": "k-1"})
    assert response.status_code == 422
    html = response.text
    assert 'id="residual_volume_ml-error"' in html and "Above the previous fill (30 mL)" in html
    assert 'aria-describedby="residual_volume_ml-error"' in html
    assert 'value="45"' in html  # what was typed is kept
    sent = fake.called("scheduling", "POST", "/v1/refills")[0]
    assert sent == {"pump_serial": "SN1", "performed_at": "2026-11-02T05:30:00Z",
                    "residual_volume_ml": 45.0, "fill_volume_ml": 30.0, "fill_type": "saline",
                    "appointment_id": "a-1"}
    key = [h.get("idempotency-key") for s, m, *_, h in fake.calls if m == "POST"]
    assert key == ["k-1"]


def test_refill_form_checks_numbers_before_calling_the_api(fake: FakeApis) -> None:
    c = client(fake)
    sign_in(c)
    response = c.post("/refill", data={"pump_serial": "SN1", "performed_at": "yesterday",
                                       "residual_volume_ml": "two", "fill_volume_ml": "30",
                                       "fill_type": "saline"})
    assert response.status_code == 422
    assert 'id="performed_at-error"' in response.text and 'id="residual_volume_ml-error"' in response.text
    assert not fake.called("scheduling", "POST", "/v1/refills")


def test_worklist_and_refill_show_the_judgements_of_scheduling_not_their_own(fake: FakeApis) -> None:
    """Due in 30 h, empty in 50 h, 30 % fast: what the dashboard once judged due soon, near empty
    and abnormal by its own thresholds is shown as scheduling judged it (e.g. a centre whose
    due-soon notice is 24 h and flow band ±40 %)."""
    fake.on("scheduling", "GET", "/v1/appointments", page([
        appt("a-1", "SN-1", 30, urgency="later", near_empty=False, empty_hours=50)]))
    fake.on("scheduling", "POST", "/v1/refills", {
        "id": "r-9", "pump_serial": "SN1", "performed_at": "2026-11-26T09:30:00Z",
        "elapsed_days": 14.0, "measured_flow_ml_per_day": 1.3, "expected_flow_ml_per_day": 1.0,
        "flow_deviation_pct": 30.0, "flow_abnormal": False, "flow_warning_pct": 40.0,
        "outside_window": False, "next_appointment": None}, status=201)
    c = client(fake)
    sign_in(c)
    html = c.get("/worklist?center=demo").text
    assert 'data-urgency="later"' in html and "Near empty" not in html
    assert "0 near empty" in html
    done = c.post("/refill", data={"pump_serial": "SN1", "performed_at": "2026-11-26T09:30",
                                   "residual_volume_ml": "11.8", "fill_volume_ml": "30",
                                   "fill_type": "saline"}).text
    assert "within band" in done and "abnormal flow" not in done and "±40.0 %" in done


def test_saved_refill_shows_measured_flow_and_deviation(fake: FakeApis) -> None:
    fake.on("scheduling", "POST", "/v1/refills", {
        "id": "r-9", "pump_serial": "SN1", "performed_at": "2026-11-02T05:30:00Z",
        "elapsed_days": 14.0, "measured_flow_ml_per_day": 1.3, "expected_flow_ml_per_day": 1.0,
        "flow_deviation_pct": 30.0, "flow_abnormal": True, "flow_warning_pct": 15.0,
        "outside_window": False,
        "next_appointment": {"fill_type": "chemo", "due_at": "2026-11-16T05:30:00Z"}}, status=201)
    c = client(fake)
    sign_in(c)
    response = c.post("/refill", data={"pump_serial": "SN1", "performed_at": "2026-11-02T05:30",
                                       "residual_volume_ml": "11.8", "fill_volume_ml": "30",
                                       "fill_type": "saline"})
    assert response.status_code == 201
    assert "1.300 mL/day" in response.text and "+30.0 %" in response.text
    assert "abnormal flow" in response.text and "2026-11-16 05:30 UTC" in response.text


def test_pump_page_charts_readings_against_the_band(fake: FakeApis) -> None:
    fake.on("inventory", "GET", "/v1/pumps/SN1", {
        "serial_number": "SN1", "model_code": "DEMO-30", "status": "implanted",
        "labeled_flow_ml_per_day": 1.0, "reservoir_ml": 30, "patient_mrn": "MRN1",
        "lot_number": "L1", "expiry_date": "2028-12-31"})
    fake.on("inventory", "GET", "/v1/pumps/SN1/history", page([
        {"at": "2026-10-01T08:00:00Z", "actor": "bea.biomed", "action": "implant",
         "from_status": "in_stock", "to_status": "implanted", "details": {"center": "demo"}}]))
    fake.on("scheduling", "GET", "/v1/pumps/SN1/flow-readings", page([
        {"refill_id": "r1", "performed_at": "2026-10-29T08:00:00Z", "elapsed_days": 14,
         "measured_flow_ml_per_day": 1.02, "expected_flow_ml_per_day": 1.0, "flow_deviation_pct": 2.0,
         "flow_abnormal": False, "flow_warning_pct": 15.0},
        {"refill_id": "r2", "performed_at": "2026-10-19T04:00:00Z", "elapsed_days": 14,
         "measured_flow_ml_per_day": 1.3, "expected_flow_ml_per_day": 1.0, "flow_deviation_pct": 30.0,
         "flow_abnormal": True, "flow_warning_pct": 15.0},
    ]))
    fake.on("scheduling", "GET", "/v1/appointments", page([appt("a1", "SN1", -5, urgency="overdue")]))
    fake.on("alerts", "GET", "/v1/alerts", page([
        {"id": "al1", "kind": "flow_abnormal", "severity": "critical", "status": "firing",
         "summary": "flow +30 %"}]))
    c = client(fake)
    sign_in(c)
    html = c.get("/pumps/SN1").text
    assert 'data-points="2"' in html and html.count('class="point') == 2
    assert "point-abnormal" in html and "±15.0 %" in html
    assert "implant" in html and "bea.biomed" in html
    assert "Overdue" in html and "flow +30 %" in html


def test_alerts_ack_in_one_click_returns_the_refreshed_table(fake: FakeApis) -> None:
    state = {"status": "firing"}
    alert = {"id": "al1", "kind": "refill_overdue", "severity": "critical", "summary": "SN1 overdue",
             "pump_serial": "SN1", "last_raised_at": iso_z(T0)}

    def listing(request: httpx.Request) -> httpx.Response:
        wanted = request.url.params.get("status")
        items = [{**alert, "status": state["status"]}] if wanted in (None, state["status"]) else []
        return httpx.Response(200, json=page(items))

    def ack(request: httpx.Request) -> httpx.Response:
        state["status"] = "acknowledged"
        return httpx.Response(200, json={**alert, "status": "acknowledged"})

    fake.on("alerts", "GET", "/v1/alerts", listing)
    fake.on("alerts", "POST", "/v1/alerts/al1/ack", ack)
    c = client(fake)
    sign_in(c, "otto.oncall", ("oncall",))
    full = c.get("/alerts").text
    assert 'hx-trigger="every 5s' in full and "Acknowledge" in full
    response = c.post("/alerts/al1/ack", data={"status": "open"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "Alert acknowledged." in response.text and "<html" not in response.text
    assert ">acknowledged<" in response.text
    assert fake.called("alerts", "POST", "/v1/alerts/al1/ack") == [{}]


def test_resolve_without_js_redirects_back_and_a_conflict_is_shown(fake: FakeApis) -> None:
    fake.on("alerts", "POST", "/v1/alerts/al1/resolve", {"id": "al1", "status": "resolved"})
    fake.on("alerts", "GET", "/v1/alerts/al1", {"id": "al1", "kind": "refill_overdue",
                                                "severity": "critical", "status": "firing"})
    c = client(fake)
    sign_in(c)
    # resolving asks what was done: without it nothing is sent
    blank = c.post("/alerts/al1/resolve", data={"back": "/alerts/al1", "resolution": "  "})
    assert blank.status_code == 422 and 'id="resolution-error"' in blank.text
    assert fake.called("alerts", "POST", "/v1/alerts/al1/resolve") == []
    response = c.post("/alerts/al1/resolve", data={"back": "/alerts/al1",
                                                   "resolution": "refilled today"})
    assert response.status_code == 303 and response.headers["location"] == "/alerts/al1"
    assert fake.called("alerts", "POST", "/v1/alerts/al1/resolve") == [
        {"resolution": "refilled today"}]
    fake.on("alerts", "POST", "/v1/alerts/al1/ack",
            {"title": "Conflict", "status": 409, "detail": "alert is resolved"}, status=409)
    conflict = c.post("/alerts/al1/ack", data={})
    assert conflict.status_code == 409 and "alert is resolved" in conflict.text


def test_alert_page_for_the_on_call_link(fake: FakeApis) -> None:
    fake.on("alerts", "GET", "/v1/alerts/al1", {
        "id": "al1", "kind": "reservoir_near_empty", "severity": "critical", "status": "firing",
        "summary": "SN1 near empty", "pump_serial": "SN1", "occurrences": 2, "escalation_level": 1,
        "timeline": [{"at": iso_z(T0), "action": "raised"}]})
    fake.on("alerts", "GET", "/v1/notifications", page([
        {"id": "n1", "alert_id": "al1", "level": 1, "channel": "log", "recipient": "otto",
         "status": "sent", "attempts": 1, "sent_at": iso_z(T0), "error": None}]))
    c = client(fake)
    sign_in(c, "otto.oncall", ("oncall",))
    html = c.get("/alerts/al1").text
    assert "SN1 near empty" in html and "raised" in html and "otto" in html
    assert 'action="/alerts/al1/ack"' in html
    assert c.get("/alerts/missing").status_code == 404


def test_the_page_s_link_marks_it_seen_and_the_read_status_is_shown(fake: FakeApis) -> None:
    fake.on("alerts", "GET", "/v1/alerts/al1", {
        "id": "al1", "kind": "flow_abnormal", "severity": "critical", "status": "firing",
        "summary": "SN1 flow fast", "occurrences": 1, "escalation_level": 1, "timeline": []})
    fake.on("alerts", "POST", "/v1/notifications/n1/seen", {"id": "n1", "status": "seen"})
    fake.on("alerts", "POST", "/v1/notifications/n%2F2/seen",
            {"title": "Not found", "status": 404, "detail": "no such page"}, status=404)
    fake.on("alerts", "GET", "/v1/notifications", page([
        {"id": "n1", "alert_id": "al1", "level": 1, "channel": "apprise", "recipient": "otto",
         "status": "seen", "attempts": 1, "sent_at": iso_z(T0), "error": None,
         "delivered_at": iso_z(T0), "seen_at": iso_z(T0), "acknowledged_at": None}]))
    c = client(fake)
    sign_in(c, "otto.oncall", ("oncall",))
    html = c.get("/alerts/al1", params={"n": "n1"}).text
    assert fake.called("alerts", "POST", "/v1/notifications/n1/seen") == [{}]
    assert 'data-testid="page-receipts"' in html and ">seen<" in html
    assert c.get("/alerts/al1").status_code == 200
    assert len(fake.called("alerts", "POST", "/v1/notifications/n1/seen")) == 1  # no n: no mark
    assert c.get("/alerts/al1", params={"n": "n/2"}).status_code == 200  # a bad link still shows


def test_acknowledging_from_a_page_s_link_acknowledges_that_page(fake: FakeApis) -> None:
    fake.on("alerts", "GET", "/v1/alerts/al1", {
        "id": "al1", "kind": "flow_abnormal", "severity": "critical", "status": "firing",
        "summary": "SN1 flow fast", "occurrences": 1, "escalation_level": 2, "timeline": [
            {"at": iso_z(T0), "action": "page_acknowledged", "actor": "olga.oncall",
             "details": {"notification_id": "n2", "level": 2, "recipient": "bob"}}]})
    fake.on("alerts", "POST", "/v1/notifications/n1/seen", {"id": "n1", "status": "seen"})
    sent = {"alert_id": "al1", "channel": "log", "status": "sent", "attempts": 1,
            "sent_at": iso_z(T0), "error": None}
    fake.on("alerts", "GET", "/v1/notifications", page([
        {**sent, "id": "n1", "level": 1, "recipient": "ann"},
        {**sent, "id": "n2", "level": 2, "recipient": "bob", "status": "acknowledged",
         "acknowledged_at": iso_z(T0)}]))
    fake.on("alerts", "POST", "/v1/alerts/al1/ack", {"id": "al1", "status": "acknowledged"})
    c = client(fake)
    sign_in(c, "otto.oncall", ("oncall",))
    html = c.get("/alerts/al1", params={"n": "n1"}).text
    assert '<input type="hidden" name="notification_id" value="n1">' in html
    receipts = html[html.index('data-testid="page-receipts"'):]
    assert "by olga.oncall" in receipts and receipts.count(" by ") == 1  # bob's page only
    # a link naming no page of this alert is no reason for the acknowledgement to fail
    assert 'name="notification_id"' not in c.get("/alerts/al1", params={"n": "elsewhere"}).text
    assert 'name="notification_id"' not in c.get("/alerts/al1").text
    assert c.post("/alerts/al1/ack", data={"notification_id": "n1",
                                           "back": "/alerts/al1"}).status_code == 303
    assert c.post("/alerts/al1/ack", data={"back": "/alerts/al1"}).status_code == 303
    assert fake.called("alerts", "POST", "/v1/alerts/al1/ack") == [{"notification_id": "n1"}, {}]


@pytest.mark.parametrize("typed", ["<GS>", "\\x1d", "\x1d"])
def test_register_by_udi_passes_the_group_separator_on(fake: FakeApis, typed: str) -> None:
    fake.on("inventory", "POST", "/v1/pumps", lambda r: httpx.Response(201, json={
        "serial_number": "SN1001", "model_code": "DEMO-30", "lot_number": "LOT42",
        "expiry_date": "2028-12-31", "labeled_flow_ml_per_day": 1.0, "status": "in_stock"}))
    fake.on("inventory", "GET", "/v1/pumps", page([]))
    c = client(fake)
    sign_in(c, "bea.biomed", ("biomed",))
    raw = f"0100812345000016172812311OLOT42{typed}21SN1001"
    response = c.post("/stock/register", data={"udi": raw})
    assert response.status_code == 201
    assert "Registered pump SN1001" in response.text
    assert fake.called("inventory", "POST", "/v1/pumps") == [
        {"udi": "0100812345000016172812311OLOT42\x1d21SN1001"}]


def test_register_shows_the_api_refusal_beside_the_scan_field(fake: FakeApis) -> None:
    fake.on("inventory", "POST", "/v1/pumps", {
        "title": "Unprocessable content", "status": 422, "detail": "udi: unknown GTIN",
        "errors": [{"field": "udi", "message": "no model has GTIN 00812345000099"}]}, status=422)
    fake.on("inventory", "GET", "/v1/pumps", page([]))
    c = client(fake)
    sign_in(c, "bea.biomed", ("biomed",))
    response = c.post("/stock/register", data={"udi": "(01)00812345000099(21)X"})
    assert response.status_code == 422
    assert 'id="udi-error"' in response.text and "No model has GTIN" in response.text
    fake.on("inventory", "POST", "/v1/pumps",
            {"title": "Conflict", "status": 409, "detail": "serial X already registered"}, status=409)
    conflict = c.post("/stock/register", data={"udi": "(01)00812345000016(21)X"})
    assert conflict.status_code == 409 and "already registered" in conflict.text


def test_stock_counts_pumps_by_status_and_lists_expiring(fake: FakeApis) -> None:
    pumps = [{"serial_number": f"S{i}", "status": s, "model_code": "M", "lot_number": "L",
              "expiry_date": "2027-01-01"}
             for i, s in enumerate(["in_stock", "in_stock", "implanted", "quarantined"])]

    def listing(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("expiring_before"):
            return httpx.Response(200, json=page([{**pumps[0], "expiry_date": "2026-11-07"}]))
        return httpx.Response(200, json=page(pumps))

    fake.on("inventory", "GET", "/v1/pumps", listing)
    c = client(fake)
    sign_in(c)
    html = c.get("/stock").text
    assert '<strong data-status="in_stock">2</strong>' in html
    assert '<strong data-status="implanted">1</strong>' in html
    assert "expires 2026-11-07" in html
    expiring = [p for p in fake.called("inventory", "GET", "/v1/pumps") if "expiring_before" in p]
    assert expiring[0]["expiring_before"] == (T0 + timedelta(days=90)).date().isoformat()
    assert expiring[0]["status"] == "in_stock"


def test_recall_previews_then_names_the_implanted_pumps(fake: FakeApis) -> None:
    fake.on("inventory", "GET", "/v1/pumps", lambda r: httpx.Response(200, json=page([
        {"serial_number": f"S-{r.url.params['lot_number']}", "lot_number": r.url.params["lot_number"],
         "status": "implanted", "patient_mrn": "MRN7"}])))
    fake.on("inventory", "POST", "/v1/recalls", {
        "recall_id": "rc1", "quarantined": ["S9"],
        "implanted": [{"serial_number": "S-L1", "patient_mrn": "MRN7", "center": "demo"}]}, status=201)
    c = client(fake)
    sign_in(c, "bea.biomed", ("biomed",))
    preview = c.post("/recall", data={"model_code": "DEMO-30", "lot_numbers": "L1, L2",
                                      "action": "preview"}).text
    assert "S-L1" in preview and "S-L2" in preview and "<strong>2</strong> implanted" in preview
    assert not fake.called("inventory", "POST", "/v1/recalls")
    missing_reason = c.post("/recall", data={"model_code": "DEMO-30", "lot_numbers": "L1",
                                             "action": "issue"})
    assert missing_reason.status_code == 422 and 'id="reason-error"' in missing_reason.text
    confirm = c.post("/recall", data={"model_code": "DEMO-30", "lot_numbers": "L1 L2",
                                      "reason": "FSN-1", "action": "issue"}).text
    assert 'data-testid="recall-confirm"' in confirm and "S-L2" in confirm
    assert not fake.called("inventory", "POST", "/v1/recalls")
    result = c.post("/recall", data={"model_code": "DEMO-30", "lot_numbers": "L1 L2",
                                     "reason": "FSN-1", "action": "confirm"}).text
    assert fake.called("inventory", "POST", "/v1/recalls") == [
        {"model_code": "DEMO-30", "lot_numbers": ["L1", "L2"], "reason": "FSN-1"}]
    assert "Recall rc1 issued" in result and "MRN7" in result


def test_static_assets_are_served_locally(fake: FakeApis) -> None:
    c = client(fake)
    login = c.get("/login").text
    assert 'src="/static/htmx.min.js"' in login and "http" not in login.split("<body")[0].replace(
        'content="width', "")
    assert c.get("/static/htmx.min.js").status_code == 200
    assert c.get("/static/app.css").status_code == 200


def test_pump_page_draws_schedulings_trend_dashed(fake: FakeApis) -> None:
    fake.on("inventory", "GET", "/v1/pumps/SN1", {
        "serial_number": "SN1", "model_code": "DEMO-30", "status": "implanted",
        "labeled_flow_ml_per_day": 1.0, "reservoir_ml": 30})
    readings = [{"refill_id": f"r{d}", "performed_at": f"2026-10-{d:02d}T08:00:00Z",
                 "elapsed_days": 14, "measured_flow_ml_per_day": flow,
                 "expected_flow_ml_per_day": 1.0, "flow_deviation_pct": (flow - 1) * 100,
                 "flow_abnormal": False, "flow_warning_pct": 15.0}
                for d, flow in ((1, 1.02), (15, 1.06), (29, 1.10))]
    fake.on("scheduling", "GET", "/v1/pumps/SN1/flow-readings", {**page(readings), "trend": {
        "predicted_at": "2026-11-12T08:00:00Z", "predicted_flow_ml_per_day": 1.16,
        "predicted_deviation_pct": 16.0, "crossing": True}})
    c = client(fake)
    sign_in(c)
    html = c.get("/pumps/SN1").text
    assert 'data-testid="flow-projection"' in html and 'stroke-dasharray="6 4"' in html
    assert "1.160 mL/day (+16.0 %) predicted for 2026-11-12 08:00 UTC" in html
