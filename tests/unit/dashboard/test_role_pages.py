"""The pharmacist's, oncologist's and biomed's pages over faked APIs: what they send, what they
refuse before sending (in plain words, beside the field), and the menu by role."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from services.dashboard.biomed import action_body, possible_actions
from services.dashboard.menu import home_for, menu_for
from services.dashboard.oncology import read_number
from services.dashboard.pharmacy import order_rows, status_body
from services.dashboard.views import UTC_ZONE
from tests.factories import T0
from tests.unit.dashboard.fakes import FakeApis, client, page, sign_in


@pytest.fixture
def fake() -> FakeApis:
    return FakeApis()


def _order(oid: str, hours: float, status: str = "requested") -> dict[str, Any]:
    return {"id": oid, "status": status, "needed_by": (T0 + timedelta(hours=hours)).isoformat(),
            "patient_mrn": "M1", "pump_serial": "S1", "drugs": [], "history": []}


def test_late_orders_come_first_then_by_needed_by() -> None:
    rows = order_rows([_order("later", 30), _order("soon", 2), _order("late", -1),
                       _order("sent", -5, "dispatched"), _order("later-late", -0.5)], T0)
    assert [r.delivery["id"] for r in rows] == ["late", "later-late", "sent", "soon", "later"]
    assert [r.late for r in rows] == [True, True, False, False, False]


@pytest.mark.parametrize(("status", "lot", "bud", "reason", "errors"), [
    ("accepted", "", "", "", set()),
    ("compounded", "", "", "", {"lot", "beyond_use_at"}),
    ("compounded", "L1", "2026-11-01T10:00", "", {"beyond_use_at"}),  # in the past
    ("compounded", "L1", "2026-11-09T10:00", "", set()),
    ("rejected", "", "", "  ", {"reason"}),
    ("delivered", "", "", "", {"status"}),  # the nurse's fill says delivered, not this page
    ("requested", "", "", "", {"status"}),
])
def test_status_changes_are_checked_before_they_are_sent(status: str, lot: str, bud: str,
                                                         reason: str, errors: set[str]) -> None:
    body, found = status_body(status, lot, bud, reason, T0, UTC_ZONE)
    assert set(found) == errors
    if not errors:
        assert body["status"] == status and body["at"].endswith("Z")


def test_the_pharmacist_records_compounded_with_lot_and_beyond_use(fake: FakeApis) -> None:
    order = _order("o1", 5, "accepted")
    fake.on("scheduling", "GET", "/v1/deliveries/o1", order)
    fake.on("scheduling", "GET", "/v1/patients/M1", {"mrn": "M1", "given_name": "Ann",
                                                     "family_name": "Doe", "birth_date": "1950-02-03"})
    fake.on("scheduling", "POST", "/v1/deliveries/o1/status", order)
    c = client(fake)
    sign_in(c, "pia.pharmacist", ("pharmacist",))
    page_text = c.get("/deliveries/o1").text
    assert "Doe, Ann" in page_text and "born 1950-02-03" in page_text
    missing = c.post("/deliveries/o1/status", data={"status": "compounded"})
    assert missing.status_code == 422 and 'id="lot-error"' in missing.text
    assert not fake.called("scheduling", "POST", "/v1/deliveries/o1/status")
    done = c.post("/deliveries/o1/status", data={"status": "compounded", "lot": " PH-1 ",
                                                 "beyond_use_at": "2026-11-09T10:00"})
    assert done.status_code == 303 and done.headers["location"] == "/deliveries/o1?done=compounded"
    assert fake.called("scheduling", "POST", "/v1/deliveries/o1/status") == [
        {"status": "compounded", "at": "2026-11-02T08:00:00Z", "lot": "PH-1",
         "beyond_use_at": "2026-11-09T10:00:00Z"}]


def test_a_late_status_is_said_in_words(fake: FakeApis) -> None:
    fake.on("scheduling", "GET", "/v1/deliveries/o1", _order("o1", 5, "dispatched"))
    fake.on("scheduling", "POST", "/v1/deliveries/o1/status", {
        "title": "Conflict", "status": 409,
        "detail": "order is already dispatched; accepted recorded, not applied"}, status=409)
    c = client(fake)
    sign_in(c, "pia.pharmacist", ("pharmacist",))
    answer = c.post("/deliveries/o1/status", data={"status": "accepted"})
    assert answer.status_code == 409
    assert "Not applied: order is already dispatched" in answer.text
    assert "409 Conflict" not in answer.text


@pytest.mark.parametrize(("raw", "value", "error"), [
    ("72.5", 72.5, None), ("72,5", 72.5, None), ("", None, None), ("0", None, "more than zero"),
    ("-3", None, "more than zero"), ("abc", None, "Enter"), ("nan", None, "Enter"),
    ("inf", None, "Enter"), ("1e400", None, "Enter"),
])
def test_numbers_are_read_with_plain_errors(raw: str, value: float | None, error: str | None) -> None:
    errors: dict[str, str] = {}
    assert read_number(raw, "weight_kg", errors) == value
    if error:
        assert error in errors["weight_kg"] and "Input should" not in errors["weight_kg"]
    else:
        assert not errors


def test_a_dose_beyond_the_hard_limit_comes_back_beside_the_field(fake: FakeApis) -> None:
    therapy = {"id": "t1", "patient_mrn": "M1", "pump_serial": "S1", "regimen": "fudr_alternating",
               "status": "active", "start_on": "2026-11-02", "refill_interval_days": 14,
               "fudr_mg_per_kg_day": 0.12, "dosing_weight": "actual", "created_by": "dr"}
    fake.on("scheduling", "GET", "/v1/therapies/t1", therapy)
    fake.on("scheduling", "GET", "/v1/therapies/t1/next-order", {
        "therapy_id": "t1", "regimen": "fudr_alternating", "drugs": [
            {"code": "floxuridine", "name": "Floxuridine (FUDR)", "amount": 252.0, "unit": "mg",
             "basis": "0.12 mg/kg/day x 70 kg x 30 mL / 1.0 mL/day (labeled flow)"}]})
    fake.on("scheduling", "GET", "/v1/appointments", page([]))
    message = "3 mg/kg/day is outside the hard limit of 0.05–1 mg/kg/day, which no override passes"
    fake.on("scheduling", "PATCH", "/v1/therapies/t1", {
        "title": "Unprocessable", "status": 422, "detail": "invalid",
        "errors": [{"field": "fudr_mg_per_kg_day", "message": message}]}, status=422)
    c = client(fake)
    sign_in(c, "omar.oncologist", ("oncologist",))
    shown = c.get("/therapies/t1").text
    assert "Floxuridine (FUDR)</strong> 252.0 mg" in shown and "x 70 kg x 30 mL" in shown
    refused = c.post("/therapies/t1/dose", data={"fudr_mg_per_kg_day": "3",
                                                 "dose_override_reason": "board"})
    assert refused.status_code == 422
    assert f'id="fudr_mg_per_kg_day-error" data-field="fudr_mg_per_kg_day">{message}' in refused.text
    assert fake.called("scheduling", "PATCH", "/v1/therapies/t1") == [
        {"fudr_mg_per_kg_day": 3.0, "dose_override_reason": "board"}]


def test_a_stop_needs_a_reason_and_a_confirmation_and_is_sent_once_given(fake: FakeApis) -> None:
    fake.on("scheduling", "PATCH", "/v1/therapies/t1", {"id": "t1"})
    c = client(fake)
    sign_in(c, "omar.oncologist", ("oncologist",))
    assert c.post("/therapies/t1/status", data={"action": "stop"}).status_code in (404, 422)
    assert not fake.called("scheduling", "PATCH", "/v1/therapies/t1")
    # the first post only asks for the confirmation, naming what a stop does, and sends nothing
    fake.on("scheduling", "GET", "/v1/therapies/t1", {
        "id": "t1", "patient_mrn": "M1", "pump_serial": "S1", "regimen": "saline_maintenance",
        "status": "active", "start_on": "2026-11-02", "refill_interval_days": 14,
        "dosing_weight": "actual", "created_by": "dr"})
    fake.on("scheduling", "GET", "/v1/appointments", page([]))
    asked = c.post("/therapies/t1/status", data={"action": "stop", "reason": "complete"})
    assert asked.status_code == 200 and "Confirm: stop this therapy for good?" in asked.text
    assert 'name="reason" value="complete"' in asked.text
    assert not fake.called("scheduling", "PATCH", "/v1/therapies/t1")
    done = c.post("/therapies/t1/status", data={"action": "stop", "reason": "complete",
                                                "step": "confirm"})
    assert done.headers["location"] == "/therapies/t1?done=stop"
    assert fake.called("scheduling", "PATCH", "/v1/therapies/t1") == [
        {"action": "stop", "reason": "complete"}]


def _pump(status: str = "in_stock", expiry: str = "2030-01-01") -> dict[str, Any]:
    return {"serial_number": "S1", "status": status, "expiry_date": expiry}


def test_an_expired_pump_is_not_offered_for_implant_and_refused_if_posted() -> None:
    assert [a.name for a in possible_actions(_pump(), T0)] == ["quarantine", "retire", "implant"]
    expired = _pump(expiry="2026-11-01")
    assert "implant" not in [a.name for a in possible_actions(expired, T0)]
    _, errors = action_body("implant", {"patient_mrn": "M1", "center": "C",
                                        "at": "2026-11-02T07:00"}, expired, T0, UTC_ZONE)
    assert "cannot be implanted" in errors["form"]
    body, errors = action_body("implant", {"patient_mrn": "M1", "center": "C",
                                           "at": "2026-11-02T07:00"}, _pump(), T0, UTC_ZONE)
    assert not errors and body == {"patient_mrn": "M1", "center": "C",
                                   "implanted_at": "2026-11-02T07:00:00Z"}
    _, errors = action_body("explant", {"at": "2026-11-03T07:00"}, _pump("implanted"), T0,
                            UTC_ZONE)
    assert set(errors) == {"reason", "at"}  # no reason, and in the future


def test_a_pump_move_asks_for_confirmation_before_it_is_sent(fake: FakeApis) -> None:
    fake.on("inventory", "GET", "/v1/pumps/S1", _pump())
    fake.on("inventory", "GET", "/v1/pumps/S1/history", page([]))
    fake.on("inventory", "POST", "/v1/pumps/S1/quarantine", lambda r: httpx.Response(
        200, json=_pump("quarantined")))
    c = client(fake)
    sign_in(c, "bea.biomed", ("biomed",))
    review = c.post("/devices/S1/quarantine", data={"reason": "cracked"})
    assert review.status_code == 200 and 'data-testid="confirm"' in review.text
    assert not fake.called("inventory", "POST", "/v1/pumps/S1/quarantine")
    done = c.post("/devices/S1/quarantine", data={"reason": "cracked", "step": "confirm"})
    assert done.status_code == 303
    assert fake.called("inventory", "POST", "/v1/pumps/S1/quarantine") == [{"reason": "cracked"}]
    assert c.post("/devices/S1/explode", data={"step": "confirm"}).status_code == 404


def test_the_menu_shows_what_the_roles_can_do() -> None:
    assert [i.label for i in menu_for({"pharmacist"})] == ["Deliveries", "Reports"]
    assert [i.label for i in menu_for({"biomed"})] == ["Stock", "Recall", "Reports"]
    assert [i.label for i in menu_for({"oncologist"})] == ["Alerts", "Patients", "Reports"]
    assert [i.label for i in menu_for({"nurse"})] == ["Worklist", "Alerts", "Record refill"]
    assert [i.label for i in menu_for({"oncall"})] == ["Worklist", "Alerts"]
    assert len(menu_for({"admin"})) == 8
    assert (home_for({"pharmacist"}), home_for({"oncall", "nurse"}), home_for({"biomed"})) == (
        "/deliveries", "/worklist", "/stock")


def test_the_pharmacist_lands_on_the_deliveries_with_their_menu(fake: FakeApis) -> None:
    fake.on("scheduling", "GET", "/v1/deliveries", page([]))
    c = client(fake)
    sign_in(c, "pia.pharmacist", ("pharmacist",))
    assert c.get("/").headers["location"] == "/deliveries"
    text = c.get("/deliveries").text
    nav = text.split('<nav aria-label="Main">')[1].split("</nav>")[0]
    assert 'href="/deliveries"' in nav and 'href="/worklist"' not in nav


def test_the_recall_page_lists_past_recalls_with_what_each_touched(fake: FakeApis) -> None:
    fake.on("inventory", "GET", "/v1/pump-models", page([]))
    fake.on("inventory", "GET", "/v1/recalls", page([{
        "recall_id": "rc1", "model_code": "DEMO-INTERA-3000", "lot_numbers": ["L1", "L2"],
        "reason": "FSN-9", "issued_at": "2026-11-01T10:00:00Z", "issued_by": "bea",
        "quarantined": ["S1"], "implanted": [{"serial_number": "S2", "patient_mrn": "M2",
                                              "center": "C"}], "already_quarantined": ["S3"]}]))
    c = client(fake)
    sign_in(c, "bea.biomed", ("biomed",))
    text = c.get("/recall").text
    assert "<title>Recall · HAI pumps</title>" in text
    past = text.split('data-testid="past-recalls"')[1].split("</ul>")[0]
    for shown in ("2026-11-01 10:00 UTC", "lots L1, L2", "FSN-9", "Quarantined (1): S1",
                  "already quarantined: S3", "S2 (MRN M2)"):
        assert shown in past


def test_a_transfer_is_reviewed_then_confirmed_and_sent_once(fake: FakeApis) -> None:
    patient = {"mrn": "M1", "given_name": "Ann", "family_name": "Doe", "birth_date": "1950-02-03",
               "weight_kg": 70, "center": "C1"}
    fake.on("scheduling", "GET", "/v1/patients/M1", patient)
    fake.on("scheduling", "GET", "/v1/therapies", page([]))
    fake.on("inventory", "GET", "/v1/pumps", page([]))
    fake.on("scheduling", "PATCH", "/v1/patients/M1", {**patient, "center": "C2"})
    c = client(fake)
    sign_in(c, "omar.oncologist", ("oncologist",))
    assert 'data-testid="transfer-form"' in c.get("/patients/M1").text
    for typed, words in (("  ", "Enter the code of the centre"),
                         ("C1", "already cared for at C1")):
        refused = c.post("/patients/M1/transfer", data={"to_center": typed, "step": "confirm"})
        assert refused.status_code == 422 and words in refused.text
    asked = c.post("/patients/M1/transfer", data={"to_center": " C2 "})
    assert asked.status_code == 200 and "from C1 to C2?" in asked.text
    assert "Past refills stay counted where they were done" in asked.text
    assert not fake.called("scheduling", "PATCH", "/v1/patients/M1")  # the review sends nothing
    done = c.post("/patients/M1/transfer", data={"to_center": " C2 ", "step": "confirm"})
    assert done.status_code == 303 and done.headers["location"] == "/patients/M1?done=transferred"
    assert fake.called("scheduling", "PATCH", "/v1/patients/M1") == [{"center": "C2"}]


def test_a_transfer_to_a_centre_the_user_lacks_is_said_beside_the_field(fake: FakeApis) -> None:
    fake.on("scheduling", "GET", "/v1/patients/M1", {
        "mrn": "M1", "given_name": "Ann", "family_name": "Doe", "birth_date": "1950-02-03",
        "weight_kg": 70, "center": "C1"})
    fake.on("scheduling", "PATCH", "/v1/patients/M1", {
        "title": "Forbidden", "status": 403, "detail": "this token does not cover centre C9"},
        status=403)
    c = client(fake)
    sign_in(c, "omar.oncologist", ("oncologist",))
    refused = c.post("/patients/M1/transfer", data={"to_center": "C9", "step": "confirm"})
    assert refused.status_code == 403
    assert "You may not move patients to C9: it is not one of your centres" in refused.text
