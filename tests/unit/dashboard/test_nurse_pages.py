"""The nurse's and on-call's pages over faked APIs: the patient confirmed before a refill is
saved, the scanned bag checked against the appointment, local time typed and shown, alerts'
details as labelled fields, an unknown page as HTML."""

from __future__ import annotations

import re

import pytest

from tests.unit.dashboard.fakes import FakeApis, client, page, sign_in

PUMP = {"serial_number": "SN1", "model_code": "M", "reservoir_ml": 30,
        "labeled_flow_ml_per_day": 1.0, "status": "implanted", "patient_mrn": "MRN-1"}
PATIENT = {"mrn": "MRN-1", "given_name": "Ada", "family_name": "Testpatient",
           "birth_date": "1961-02-03", "center": "C1", "weight_kg": 70}
DELIVERY = {"id": "ord-1", "appointment_id": "a-1", "status": "dispatched", "lot": "LOT-42",
            "beyond_use_at": "2026-11-28T18:00:00Z", "pump_serial": "SN1",
            "drugs": [{"code": "floxuridine", "name": "floxuridine", "amount": 123.5, "unit": "mg"},
                      {"code": "heparin", "name": "heparin", "amount": 5000, "unit": "units"}]}
FORM = {"pump_serial": "SN1", "performed_at": "2026-11-02T04:30", "residual_volume_ml": "2",
        "fill_volume_ml": "30", "fill_type": "saline", "appointment_id": "a-1",
        "idempotency_key": "k-1", "patient_confirmed": "MRN-1"}
HTMX = {"HX-Request": "true"}  # the polled fragment carries its banners
SAVED = {"id": "r-1", "pump_serial": "SN1", "patient_mrn": "MRN-1", "performed_at": "2026-11-02T09:30:00Z",
         "fill_type": "saline", "fill_volume_ml": 30, "residual_volume_ml": 2, "recorded_by": "nora",
         "expected_flow_ml_per_day": 1.0, "flow_warning_pct": 15, "elapsed_days": None,
         "measured_flow_ml_per_day": None, "flow_deviation_pct": None, "outside_window": False,
         "next_appointment": None}


@pytest.fixture
def fake() -> FakeApis:
    fake = FakeApis()
    fake.on("inventory", "GET", "/v1/pumps/SN1", PUMP)
    fake.on("scheduling", "GET", "/v1/patients/MRN-1", PATIENT)
    fake.on("scheduling", "GET", "/v1/deliveries/ord-1", DELIVERY)
    fake.on("scheduling", "POST", "/v1/refills", SAVED, status=201)
    return fake


def test_the_form_shows_two_identifiers_and_what_the_chemo_bag_holds(fake: FakeApis) -> None:
    c = client(fake, time_zone="America/New_York")
    sign_in(c)
    html = c.get("/refill", params={"pump": "SN1", "appointment": "a-1", "fill_type": "chemo",
                                    "delivery": "ord-1"}).text
    check = re.search(r'data-testid="patient-check">(.*?)</fieldset>', html, re.S)
    assert check and "Testpatient, Ada" in check.group(1) and "MRN MRN-1" in check.group(1)
    assert "born 1961-02-03" in check.group(1)
    assert 'name="patient_confirmed" value="MRN-1"' in html
    assert not re.search(r'value="MRN-1"\s+checked', html)  # the nurse ticks it, not the page
    assert "<td>floxuridine</td><td>123.5 mg</td>" in html
    assert "<td>heparin</td><td>5000 units</td>" in html
    assert "2026-11-28 13:00 EST (UTC−05:00)" in html  # beyond-use, local with its offset
    # "performed at" starts at now (T0 = 08:00 UTC) in the centre's time
    assert 'value="2026-11-02T03:00"' in html and "Performed at (local time, America/New_York)" in html


def test_nothing_is_saved_before_the_patient_is_confirmed(fake: FakeApis) -> None:
    c = client(fake)
    sign_in(c)
    response = c.post("/refill", data={**FORM, "patient_confirmed": ""})
    assert response.status_code == 422
    assert 'id="patient_confirmed-error"' in response.text and "wristband" in response.text
    # a confirmation of another patient (the pump was changed after ticking) is no confirmation
    other = c.post("/refill", data={**FORM, "patient_confirmed": "MRN-OTHER"})
    assert other.status_code == 422 and 'id="patient_confirmed-error"' in other.text
    assert fake.called("scheduling", "POST", "/v1/refills") == []


def test_a_bag_of_another_order_is_refused_before_the_api_is_asked(fake: FakeApis) -> None:
    c = client(fake)
    sign_in(c)
    response = c.post("/refill", data={**FORM, "fill_type": "chemo", "delivery_id": "ord-9\n",
                                       "expected_delivery_id": "ord-1"})
    assert response.status_code == 422
    error = re.search(r'id="delivery_id-error"[^>]*>([^<]*)<', response.text)
    assert error and "This bag&#39;s order (ord-9) is not the order for this appointment (ord-1)" \
        in error.group(1)
    assert fake.called("scheduling", "POST", "/v1/refills") == []


def test_performed_at_is_typed_in_local_time_and_sent_in_utc(fake: FakeApis) -> None:
    c = client(fake, time_zone="America/New_York")
    sign_in(c)
    response = c.post("/refill", data=FORM)
    assert response.status_code == 201, response.text
    [sent] = fake.called("scheduling", "POST", "/v1/refills")
    assert sent["performed_at"] == "2026-11-02T09:30:00Z"  # 04:30 EST
    result = re.search(r'data-testid="result-patient">(.*?)</dd>', response.text, re.S)
    assert result and "Testpatient, Ada" in result.group(1) and "born 1961-02-03" in result.group(1)
    assert "2026-11-02 04:30 EST (UTC−05:00)" in response.text
    gap = c.post("/refill", data={**FORM, "performed_at": "2026-03-08T02:30"})
    assert gap.status_code == 422 and "does not exist" in gap.text
    assert len(fake.called("scheduling", "POST", "/v1/refills")) == 1


def test_alert_details_are_labelled_fields_and_no_raw_timestamps(fake: FakeApis) -> None:
    fake.on("alerts", "GET", "/v1/alerts/al1", {
        "id": "al1", "kind": "refill_overdue", "severity": "critical", "status": "acknowledged",
        "summary": "saline refill of pump SN1 due 2026-11-01T14:00:00+00:00", "pump_serial": "SN1",
        "patient_mrn": "MRN-1", "acknowledged_by": "otto", "acknowledged_at": "2026-11-02T07:00:00Z",
        "details": {"appointment_id": "a-1", "due_at": "2026-11-01T14:00:00+00:00",
                    "hours_to_empty": 12.345678, "refill_ids": ["r-1", "r-2"]},
        "timeline": [{"at": "2026-11-01T14:00:00Z", "action": "raised"}]})
    fake.on("alerts", "GET", "/v1/notifications", page([]))
    c = client(fake, time_zone="Europe/Paris")
    sign_in(c, "otto.oncall", ("oncall",))
    html = c.get("/alerts/al1").text
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", html.split("<main")[1])
    assert "due 2026-11-01 15:00 CET" in html
    details = re.search(r'data-testid="alert-details">(.*?)</dl>', html, re.S)
    assert details
    assert "<dt>Appointment ID</dt><dd>a-1</dd>" in details.group(1)
    assert "<dt>Due at</dt><dd>2026-11-01 15:00 CET</dd>" in details.group(1)
    assert "<dt>Hours to empty</dt><dd>12.35</dd>" in details.group(1)
    assert "<dt>Refill IDs</dt><dd>r-1, r-2</dd>" in details.group(1)
    assert "Testpatient, Ada" in html and "born 1961-02-03" in html
    assert re.search(r'data-testid="acknowledged">by otto, 2026-11-02 08:00 CET', html)
    assert 'data-testid="resolved">not yet' in html


def test_the_centre_filter_offers_the_known_centres(fake: FakeApis) -> None:
    fake.on("scheduling", "GET", "/v1/centers", page([{"code": "C1", "patients": 3},
                                                      {"code": "Centre Two", "patients": 1}]))
    fake.on("scheduling", "GET", "/v1/appointments", page([]))
    fake.on("alerts", "GET", "/v1/alerts", page([]))
    c = client(fake)
    sign_in(c)
    html = c.get("/worklist", params={"center": "C1"}).text
    assert '<select id="center" name="center">' in html
    assert '<option value="C1" selected>C1</option>' in html
    assert '<option value="Centre Two" >Centre Two</option>' in html
    assert 'hx-trigger="every 30s"' in html and 'data-testid="as-of"' in html


def test_an_unknown_page_is_html_with_a_way_back(fake: FakeApis) -> None:
    c = client(fake)
    response = c.get("/no/such/page")
    assert response.status_code == 404 and response.headers["content-type"].startswith("text/html")
    assert "Page not found" in response.text and 'href="/worklist"' in response.text
    assert '{"detail"' not in response.text
    api_ish = c.get("/v1/nothing")
    assert api_ish.status_code == 404 and api_ish.json() == {"detail": "Not Found"}


@pytest.mark.parametrize("path", ["/worklist", "/alerts", "/alerts/table"])
def test_a_centre_the_api_refuses_is_said_in_plain_words(fake: FakeApis, path: str) -> None:
    refusal = {"title": "Unprocessable content", "status": 422, "detail": "center: bad",
               "errors": [{"field": "center", "message": "must not contain '/', '\\' or '%'",
                           "type": "identifier_invalid"}]}
    for service, api_path in (("scheduling", "/v1/appointments"), ("alerts", "/v1/alerts"),
                              ("scheduling", "/v1/centers")):
        fake.on(service, "GET", api_path, refusal, status=422)
    c = client(fake)
    sign_in(c)
    response = c.get(path, params={"center": "C/1"}, headers=HTMX if path == "/alerts/table" else {})
    assert response.status_code == 200
    assert "Please check what was entered. The centre must not contain" in response.text
    assert "422" not in response.text and "identifier_invalid" not in response.text


@pytest.mark.parametrize("path", ["/worklist", "/alerts", "/alerts/table"])
def test_a_nul_byte_in_the_centre_filter_asks_no_api_and_shows_every_centre(
        fake: FakeApis, path: str) -> None:
    fake.on("scheduling", "GET", "/v1/appointments", page([]))
    fake.on("scheduling", "GET", "/v1/centers", page([]))
    fake.on("alerts", "GET", "/v1/alerts", page([]))
    c = client(fake)
    sign_in(c)
    response = c.get(path, params={"center": "C1\x00"},
                     headers=HTMX if path == "/alerts/table" else {})
    assert response.status_code == 200 and "must not contain control characters" in response.text
    assert "\x00" not in response.text
    asked = [params.get("center") for s, m, p, params, *_ in fake.calls if m == "GET"]
    assert all(not centre for centre in asked), asked
