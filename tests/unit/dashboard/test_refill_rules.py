"""The refill form and the safety rules, over faked APIs: the scanned drug order id of a chemo
fill with what is known of the order, and each refusal shown beside its field in plain words."""

from __future__ import annotations

import re

import pytest

from tests.unit.dashboard.fakes import FakeApis, client, sign_in

DELIVERY = {"id": "ord-1", "appointment_id": "a-1", "status": "dispatched", "lot": "LOT-42",
            "beyond_use_at": "2026-11-28T18:00:00Z", "pump_serial": "SN1"}
FORM = {"pump_serial": "SN1", "performed_at": "2026-11-26T09:30", "residual_volume_ml": "2",
        "fill_volume_ml": "30", "appointment_id": "a-1", "idempotency_key": "k-1"}


@pytest.fixture
def fake() -> FakeApis:
    return FakeApis()


def _refused(fake: FakeApis, field: str, message: str) -> None:
    fake.on("scheduling", "POST", "/v1/refills", {
        "type": "about:blank", "title": "Unprocessable content", "status": 422,
        "detail": f"{field}: {message}", "errors": [{"field": field, "message": message}]},
        status=422)


def _beside(html: str, field: str) -> str:
    """The error paragraph that belongs to a field's input (empty when there is none)."""
    assert f'aria-describedby="{field}-error"' in html, f"{field} input not tied to its error"
    found = re.search(rf'<p class="field-error" id="{field}-error" data-field="{field}">([^<]*)</p>',
                      html)
    return found.group(1) if found else ""


def test_the_form_asks_a_chemo_fill_for_the_scanned_order_and_shows_what_is_known(
        fake: FakeApis) -> None:
    fake.on("scheduling", "GET", "/v1/deliveries/ord-1", DELIVERY)
    c = client(fake)
    sign_in(c)
    html = c.get("/refill", params={"pump": "SN1", "appointment": "a-1", "fill_type": "chemo",
                                    "delivery": "ord-1"}).text
    # the bag is scanned, not taken on trust from the worklist: the field starts empty, with
    # the appointment's order beside it to compare
    assert '<input id="delivery_id" name="delivery_id" value=""' in html
    assert 'type="hidden" name="delivery_id"' not in html
    facts = re.search(r'data-testid="delivery-facts">(.*?)</dl>', html, re.S)
    assert facts is not None
    assert "This appointment&#39;s order ord-1" in facts.group(1)
    assert ">dispatched<" in facts.group(1) and "<dd>LOT-42</dd>" in facts.group(1)
    assert "<dd>2026-11-28 18:00 UTC</dd>" in facts.group(1)
    saline = c.get("/refill", params={"pump": "SN1", "fill_type": "saline"}).text
    assert 'name="delivery_id"' in saline and "delivery-facts" not in saline
    assert len(fake.called("scheduling", "GET", "/v1/deliveries/ord-1")) == 1  # saline: not asked


def test_a_chemo_fill_before_the_bag_is_dispatched_is_refused_beside_the_order_field(
        fake: FakeApis) -> None:
    message = ("delivery order ord-1 is requested: the pharmacy has not dispatched it yet, "
               "so the bag cannot be in hand")
    _refused(fake, "delivery_id", message)
    fake.on("scheduling", "GET", "/v1/deliveries/ord-1", {**DELIVERY, "status": "requested",
                                                          "lot": None, "beyond_use_at": None})
    c = client(fake)
    sign_in(c)
    response = c.post("/refill", data={**FORM, "fill_type": "chemo", "delivery_id": " ord-1\n",
                                       "expected_delivery_id": "ord-1"})
    assert response.status_code == 422
    html = response.text
    assert _beside(html, "delivery_id") == message[0].upper() + message[1:]
    assert "answered 422" not in html  # beside its field, not in a banner
    assert re.search(r'<strong>Scanned order ord-1</strong>.*data-testid="delivery-status">requested<',
                     html, re.S)
    assert 'value="ord-1"' in html  # what was scanned is kept, trimmed
    [sent] = fake.called("scheduling", "POST", "/v1/refills")
    assert sent["delivery_id"] == "ord-1" and sent["fill_type"] == "chemo"


def test_a_chemo_fill_without_a_scan_is_refused_beside_the_order_field(fake: FakeApis) -> None:
    message = "a chemo fill needs the delivery order id printed on the bag's label (scan it); none was given"
    _refused(fake, "delivery_id", message)
    c = client(fake)
    sign_in(c)
    fake.on("scheduling", "GET", "/v1/deliveries/ord-1", DELIVERY)
    response = c.post("/refill", data={**FORM, "fill_type": "chemo", "expected_delivery_id": "ord-1"})
    assert response.status_code == 422 and _beside(response.text, "delivery_id") == (
        "A chemo fill needs the delivery order id printed on the bag&#39;s label (scan it); "
        "none was given")
    assert "This appointment&#39;s order ord-1" in response.text  # still there to compare
    [sent] = fake.called("scheduling", "POST", "/v1/refills")
    assert "delivery_id" not in sent and "expected_delivery_id" not in sent


def test_a_refill_minutes_after_the_previous_is_refused_beside_performed_at(fake: FakeApis) -> None:
    message = ("is 0.1 h after the previous fill of this pump (2026-11-26T09:26:00+00:00); fills "
               "of one pump must be at least 24 h apart; if the previous refill was recorded in "
               "error, mark it entered-in-error (POST /v1/refills/r-1/entered-in-error) first")
    _refused(fake, "performed_at", message)
    c = client(fake)
    sign_in(c)
    response = c.post("/refill", data={**FORM, "fill_type": "saline"})
    assert response.status_code == 422
    # in plain words: the time local, no API path
    assert _beside(response.text, "performed_at") == (
        "Is 0.1 h after the previous fill of this pump (2026-11-26 09:26 UTC); fills of one pump "
        "must be at least 24 h apart; if the previous refill was recorded in error, mark it "
        "entered-in-error first")
    assert "answered 422" not in response.text


def test_a_saved_refill_says_when_the_next_one_comes_early_because_the_pump_runs_dry(
        fake: FakeApis) -> None:
    fake.on("scheduling", "POST", "/v1/refills", {
        "id": "r-9", "pump_serial": "SN1", "performed_at": "2026-11-26T09:30:00Z",
        "elapsed_days": 14.0, "measured_flow_ml_per_day": 2.0, "expected_flow_ml_per_day": 1.0,
        "flow_deviation_pct": 100.0, "outside_window": False,
        "next_appointment": {"fill_type": "chemo", "due_at": "2026-12-08T09:30:00Z",
                             "projected_empty_at": "2026-12-11T09:30:00Z",
                             "due_basis": "projected_empty"}}, status=201)
    c = client(fake)
    sign_in(c)
    response = c.post("/refill", data={**FORM, "fill_type": "saline"})
    assert response.status_code == 201
    assert "due 2026-12-08 09:30 UTC" in response.text
    assert "the pump runs dry 2026-12-11 09:30 UTC" in response.text
