"""The dashboard's "entered in error" on the pump page: offered on the latest recorded refill
only, behind a confirmation page with a required reason; the API's refusal shown there."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.unit.dashboard.fakes import FakeApis, client, page, sign_in

VOID = "/v1/refills/r2/entered-in-error"


def refill(id_: str, performed_at: str, status: str = "recorded", **extra: Any) -> dict[str, Any]:
    return {"id": id_, "pump_serial": "SN1", "patient_mrn": "MRN1", "center": "demo",
            "performed_at": performed_at, "fill_type": "saline", "fill_volume_ml": 30,
            "residual_volume_ml": 9, "measured_flow_ml_per_day": 1.5, "flow_deviation_pct": 50.0,
            "recorded_by": "nora.nurse", "status": status, **extra}


@pytest.fixture
def fake() -> FakeApis:
    f = FakeApis()
    f.on("inventory", "GET", "/v1/pumps/SN1", {
        "serial_number": "SN1", "model_code": "DEMO-30", "status": "implanted",
        "labeled_flow_ml_per_day": 1.0, "reservoir_ml": 30, "patient_mrn": "MRN1"})
    f.on("scheduling", "GET", "/v1/refills", page([
        refill("r3", "2026-11-20T08:00:00Z", "entered_in_error", void_reason="typed twice"),
        refill("r2", "2026-11-12T08:00:00Z"), refill("r1", "2026-10-29T08:00:00Z")]))
    f.on("scheduling", "GET", "/v1/refills/r2", refill("r2", "2026-11-12T08:00:00Z"))
    return f


def test_the_pump_page_offers_it_on_the_latest_recorded_refill_only(fake: FakeApis) -> None:
    c = client(fake)
    sign_in(c)
    html = c.get("/pumps/SN1").text
    assert html.count('data-testid="void-latest"') == 1
    assert 'href="/pumps/SN1/refills/r2/entered-in-error"' in html
    assert "entered in error" in html and "typed twice" in html
    assert fake.called("scheduling", "GET", "/v1/refills")[0]["pump_serial"] == "SN1"


def test_confirming_needs_a_reason_and_calls_the_api(fake: FakeApis) -> None:
    fake.on("scheduling", "POST", VOID, refill("r2", "2026-11-12T08:00:00Z", "entered_in_error"))
    c = client(fake)
    sign_in(c)
    confirm = c.get("/pumps/SN1/refills/r2/entered-in-error")
    assert confirm.status_code == 200
    assert 'data-testid="void-form"' in confirm.text and "required" in confirm.text
    blank = c.post("/pumps/SN1/refills/r2/entered-in-error", data={"reason": "   "})
    assert blank.status_code == 422 and 'data-field="reason"' in blank.text
    assert fake.called("scheduling", "POST", VOID) == []
    done = c.post("/pumps/SN1/refills/r2/entered-in-error", data={"reason": " wrong pump "})
    assert done.status_code == 303 and done.headers["location"] == "/pumps/SN1?voided=r2"
    assert fake.called("scheduling", "POST", VOID) == [{"reason": "wrong pump"}]
    assert "marked entered in error" in c.get(done.headers["location"]).text


def test_the_api_s_refusal_is_shown_on_the_confirmation_page(fake: FakeApis) -> None:
    fake.on("scheduling", "POST", VOID, lambda _r: httpx.Response(409, json={
        "type": "about:blank", "title": "Conflict", "status": 409,
        "detail": "only the latest refill of pump SN1 can be entered in error; the latest is "
                  "refill r9"}))
    c = client(fake)
    sign_in(c)
    r = c.post("/pumps/SN1/refills/r2/entered-in-error", data={"reason": "wrong pump"})
    assert r.status_code == 409 and "the latest is refill r9" in r.text
    assert "wrong pump" in r.text  # the reason typed is kept
