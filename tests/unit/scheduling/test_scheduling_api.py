"""Scheduling's API end to end on a real (SQLite) database with the in-process bus."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from shared.events import PHARMACY_EXCHANGE, EventType
from tests.factories import T0, pump_explanted
from tests.helpers import auth, emit, start
from tests.helpers import test_settings as settings_for
from tests.unit.scheduling.scheduling_support import (
    NURSE,
    ONCOLOGIST,
    dispatch,
    implant,
    outbox,
    patient,
    setup_therapy,
    therapy,
    worklist,
)


def test_patients_create_read_patch(tmp_path: Path) -> None:
    h, _ = start("scheduling", settings_for(tmp_path))
    created = patient(h, "MRN9", height_cm=170, sex="female")
    assert created["weight_kg"] == 70
    assert h.client.post("/v1/patients", json={**created}, headers=NURSE).status_code == 422
    dup = {k: created[k] for k in ("mrn", "given_name", "family_name", "birth_date", "weight_kg",
                                   "center")}
    assert h.client.post("/v1/patients", json=dup, headers=NURSE).status_code == 409
    assert h.client.post("/v1/patients", json=dup, headers=auth("pharmacist")).status_code == 403
    r = h.client.patch("/v1/patients/MRN9", json={"weight_kg": 72.5}, headers=NURSE)
    assert r.status_code == 200 and r.json()["weight_kg"] == 72.5
    assert h.client.get("/v1/patients/MRN9", headers=auth("pharmacist")).json()["weight_kg"] == 72.5
    assert h.client.get("/v1/patients/NOPE", headers=NURSE).status_code == 404
    bad = h.client.patch("/v1/patients/MRN9", json={"weight_kg": -1}, headers=NURSE)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "weight_kg"


def test_therapy_needs_the_pump_implanted_in_that_patient(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    patient(h, "MRN1")
    patient(h, "MRN2")
    body = {"patient_mrn": "MRN1", "pump_serial": "SN1", "regimen": "fudr_alternating",
            "start_on": "2026-11-10"}
    r = h.client.post("/v1/therapies", json=body, headers=ONCOLOGIST)
    assert r.status_code == 409 and "unknown" in r.json()["detail"]
    implant(h, bus, "SN1", "MRN2")
    assert h.client.post("/v1/therapies", json=body, headers=ONCOLOGIST).status_code == 409
    assert h.client.post("/v1/therapies", json=body, headers=NURSE).status_code == 403


def test_therapy_schedules_first_fill_at_midnight_utc(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    t = setup_therapy(h, bus, regimen="saline_maintenance", start_on="2026-11-20")
    assert t["refill_interval_days"] == 14 and t["status"] == "active"
    [appt] = worklist(h)
    assert appt["due_at"] == "2026-11-20T00:00:00Z"
    assert appt["fill_type"] == "saline" and appt["status"] == "scheduled"
    assert appt["therapy_id"] == t["id"] and appt["center"] == "C1"
    [event] = outbox(h, EventType.APPOINTMENT_SCHEDULED)
    assert event["data"]["id"] == appt["id"]
    assert outbox(h, EventType.ORDER_REQUESTED) == []


def test_chemo_inside_lead_time_is_ordered_at_once_with_the_dose_arithmetic(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    t = setup_therapy(h, bus, start_on="2026-11-04", heparin_units=30000)  # T0 + 2 days
    [appt] = worklist(h)
    assert appt["fill_type"] == "chemo" and appt["delivery_id"]
    [order] = outbox(h, EventType.ORDER_REQUESTED)
    assert order["exchange"] == PHARMACY_EXCHANGE and order["subject"] == appt["delivery_id"]
    data = order["data"]
    assert data["patient"]["given_name"] == "Ada" and data["patient"]["weight_kg"] == 70
    assert data["pump"] == {"serial_number": "SN1", "model_code": "INTERA-3000",
                            "reservoir_ml": 30.0, "flow_ml_per_day": 1.0}
    assert data["fill_volume_ml"] == 30.0 and data["infusion_days"] == 30.0
    fudr, heparin = data["drugs"]
    assert fudr["code"] == "floxuridine" and fudr["amount"] == 252.0
    assert fudr["basis"].startswith("0.12 mg/kg/day x 70 kg x 30 mL / 1.0 mL/day")
    assert heparin == {"code": "heparin", "name": "Heparin", "amount": 30000, "unit": "units",
                       "basis": "therapy setting (centre protocol, verify)"}
    assert data["diluent"] == "0.9% sodium chloride to 30 mL"
    assert data["appointment_id"] == appt["id"] and data["needed_by"] == "2026-11-04T00:00:00Z"
    d = h.client.get(f"/v1/deliveries/{appt['delivery_id']}", headers=NURSE).json()
    assert d["status"] == "requested" and d["therapy_id"] == t["id"] and d["center"] == "C1"
    assert [x["status"] for x in d["history"]] == ["requested"]
    listed = h.client.get("/v1/deliveries", params={"status": "requested"}, headers=NURSE).json()
    assert [x["id"] for x in listed["items"]] == [d["id"]]


def test_dose_outside_label_range_needs_an_override(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    patient(h)
    implant(h, bus)
    body = {"patient_mrn": "MRN1", "pump_serial": "SN1", "regimen": "fudr_alternating",
            "start_on": "2026-11-20", "fudr_mg_per_kg_day": 0.08}
    r = h.client.post("/v1/therapies", json=body, headers=ONCOLOGIST)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "fudr_mg_per_kg_day"
    ok = therapy(h, fudr_mg_per_kg_day=0.08, start_on="2026-11-20",
                 dose_override_reason="reduced dose after grade 2 toxicity")
    assert ok["dose_override_by"] == "dr-oz"


def test_adjusted_weight_needs_height_and_sex(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    patient(h)
    implant(h, bus)
    body = {"patient_mrn": "MRN1", "pump_serial": "SN1", "regimen": "fudr_alternating",
            "start_on": "2026-11-20", "dosing_weight": "adjusted"}
    r = h.client.post("/v1/therapies", json=body, headers=ONCOLOGIST)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "dosing_weight"
    big = {"patient_mrn": "MRN1", "pump_serial": "SN1", "regimen": "fudr_alternating",
           "start_on": "2026-11-20", "fill_volume_ml": 31}
    r = h.client.post("/v1/therapies", json=big, headers=ONCOLOGIST)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "fill_volume_ml"


def _refill(h: Any, **kw: Any) -> Any:
    body = {"pump_serial": "SN1", "residual_volume_ml": 0, "fill_volume_ml": 30,
            "fill_type": "saline", **kw}
    return h.client.post("/v1/refills", json=body, headers=NURSE)


def test_refills_measure_flow_and_schedule_the_next_fill(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    patient(h)
    implant(h, bus, labeled_flow_ml_per_day=0.8)
    therapy(h, start_on="2026-11-02")
    [first_appt] = worklist(h)
    order_id = first_appt["delivery_id"]
    dispatch(h, order_id)
    first_at = T0
    r1 = _refill(h, performed_at=first_at.isoformat(), residual_volume_ml=2, fill_type="chemo",
                 delivery_id=order_id)
    assert r1.status_code == 201, r1.text
    one = r1.json()
    assert one["delivery_id"] == order_id
    assert one["measured_flow_ml_per_day"] is None and one["elapsed_days"] is None
    assert one["next_appointment"]["fill_type"] == "saline"
    assert one["next_appointment"]["due_at"] == "2026-11-16T08:00:00Z"
    assert one["next_appointment"]["projected_empty_at"] == "2026-12-09T20:00:00Z"  # 30/0.8 d
    assert one["next_appointment"]["due_basis"] == "interval"
    assert outbox(h, EventType.FLOW_RECORDED) == []
    h.clock.advance(days=15)  # type: ignore[attr-defined]
    r2 = _refill(h, performed_at=(first_at + timedelta(days=14)).isoformat(),
                 residual_volume_ml=16.0, fill_type="saline")
    assert r2.status_code == 201, r2.text
    two = r2.json()
    assert two["elapsed_days"] == 14 and two["measured_flow_ml_per_day"] == 1.0
    assert two["expected_flow_ml_per_day"] == 0.8 and two["flow_deviation_pct"] == 25.0
    assert two["outside_window"] is False
    assert two["appointment_id"] == one["next_appointment"]["id"]
    assert two["next_appointment"]["fill_type"] == "chemo"
    [flow] = outbox(h, EventType.FLOW_RECORDED)
    assert flow["data"] == {"pump_serial": "SN1", "patient_mrn": "MRN1", "center": "C1",
                            "measured_flow_ml_per_day": 1.0, "expected_flow_ml_per_day": 0.8,
                            "flow_deviation_pct": 25.0, "residual_volume_ml": 16.0,
                            "elapsed_days": 14.0, "refill_id": two["id"]}
    completed = outbox(h, EventType.REFILL_COMPLETED)
    assert [c["data"]["id"] for c in completed] == [one["id"], two["id"]]
    assert "notes" not in completed[0]["data"]
    readings = h.client.get("/v1/pumps/SN1/flow-readings", headers=NURSE).json()
    assert [x["refill_id"] for x in readings["items"]] == [two["id"]]
    statuses = [a["status"] for a in worklist(h)]
    assert statuses == ["completed", "completed", "scheduled"]
    listed = h.client.get("/v1/refills", params={"pump_serial": "SN1"}, headers=NURSE).json()
    assert [x["id"] for x in listed["items"]] == [two["id"], one["id"]]


def test_impossible_refills_are_422_naming_the_field(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    setup_therapy(h, bus, start_on="2026-11-20")
    assert _refill(h, performed_at=(T0 - timedelta(days=1)).isoformat(), fill_volume_ml=20,
                   residual_volume_ml=1).status_code == 201
    cases: dict[str, dict[str, Any]] = {
        "residual_volume_ml": {"residual_volume_ml": 21},
        "fill_volume_ml": {"fill_volume_ml": 31},
        "performed_at": {"performed_at": (T0 + timedelta(hours=1)).isoformat()},
    }
    for field, change in cases.items():
        body = {"performed_at": T0.isoformat(), **change}
        r = _refill(h, **body)
        assert r.status_code == 422, (field, r.text)
        assert field in [e["field"] for e in r.json()["errors"]], r.json()
    before = _refill(h, performed_at=(T0 - timedelta(days=2)).isoformat())
    assert before.status_code == 422 and before.json()["errors"][0]["field"] == "performed_at"
    negative = _refill(h, performed_at=T0.isoformat(), residual_volume_ml=-1)
    assert negative.status_code == 422 and negative.json()["errors"][0]["field"] == "residual_volume_ml"
    naive = _refill(h, performed_at="2026-11-02T08:00:00")
    assert naive.status_code == 422


def test_refill_outside_window_is_flagged_and_appointment_completes_once(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    setup_therapy(h, bus, start_on="2026-11-10", regimen="saline_maintenance")
    [appt] = worklist(h)
    r = _refill(h, performed_at=T0.isoformat(), appointment_id=appt["id"], fill_type="saline")
    assert r.status_code == 201 and r.json()["outside_window"] is True  # 7.7 days early
    again = _refill(h, performed_at=T0.isoformat(), appointment_id=appt["id"], fill_type="saline")
    assert again.status_code == 409 and "completed" in again.json()["detail"]


def test_booking_and_worklist_filters(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    setup_therapy(h, bus, start_on="2026-11-20", regimen="saline_maintenance")
    setup_therapy(h, bus, "MRN2", "SN2", start_on="2026-11-12", regimen="saline_maintenance")
    assert [a["patient_mrn"] for a in worklist(h)] == ["MRN2", "MRN1"]
    assert [a["patient_mrn"] for a in worklist(h, patient_mrn="MRN1")] == ["MRN1"]
    assert len(worklist(h, due_before="2026-11-15T00:00:00Z")) == 1
    assert worklist(h, center="C9") == [] and len(worklist(h, status="scheduled")) == 2
    assert h.client.get("/v1/appointments", params={"due_before": "2026-11-15T00:00:00"},
                        headers=NURSE).status_code == 422
    page = h.client.get("/v1/appointments", params={"limit": 1}, headers=NURSE).json()
    nxt = h.client.get("/v1/appointments", params={"limit": 1, "cursor": page["next_cursor"]},
                       headers=NURSE).json()
    assert [a["patient_mrn"] for a in page["items"] + nxt["items"]] == ["MRN2", "MRN1"]
    appt = worklist(h)[0]
    r = h.client.patch(f"/v1/appointments/{appt['id']}",
                       json={"scheduled_for": "2026-11-11T09:30:00+01:00"}, headers=NURSE)
    assert r.status_code == 200 and r.json()["scheduled_for"] == "2026-11-11T08:30:00Z"
    assert h.client.patch(f"/v1/appointments/{appt['id']}", json={"scheduled_for": "2026-11-11T09:30:00Z"},
                          headers=ONCOLOGIST).status_code == 403


def test_pause_resume_stop(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    t = setup_therapy(h, bus, start_on="2026-11-03")
    url = f"/v1/therapies/{t['id']}"
    [appt] = worklist(h)
    first_order = appt["delivery_id"]
    r = h.client.patch(url, json={"action": "pause", "reason": "neutropenia"}, headers=ONCOLOGIST)
    assert r.status_code == 200 and r.json()["status"] == "paused"
    assert h.client.get(f"/v1/deliveries/{first_order}", headers=NURSE).json()["status"] == "cancelled"
    [cancel] = outbox(h, EventType.ORDER_CANCELLED)
    assert cancel["exchange"] == PHARMACY_EXCHANGE and cancel["data"]["order_id"] == first_order
    assert worklist(h)[0]["delivery_id"] is None and worklist(h)[0]["status"] == "scheduled"
    assert h.client.patch(url, json={"action": "pause"}, headers=ONCOLOGIST).status_code == 409
    r = h.client.patch(url, json={"action": "resume"}, headers=ONCOLOGIST)
    assert r.status_code == 200 and r.json()["status"] == "active"
    second_order = worklist(h)[0]["delivery_id"]
    assert second_order and second_order != first_order
    r = h.client.patch(url, json={"action": "stop", "reason": "progression"}, headers=ONCOLOGIST)
    assert r.status_code == 200 and r.json()["status"] == "stopped"
    assert [a["status"] for a in worklist(h)] == ["cancelled"]
    assert len(outbox(h, EventType.ORDER_CANCELLED)) == 2
    assert h.client.patch(url, json={"action": "resume"}, headers=ONCOLOGIST).status_code == 409
    assert h.client.patch(url, json={"action": "fly"}, headers=ONCOLOGIST).status_code == 422
    # each change told through the outbox, once (the refused ones told nothing)
    changes = outbox(h, EventType.THERAPY_STATUS_CHANGED)
    assert [(c["data"]["status"], c["data"]["reason"]) for c in changes] == [
        ("paused", "neutropenia"), ("active", None), ("stopped", "progression")]
    assert {(c["subject"], c["data"]["therapy_id"], c["data"]["pump_serial"], c["data"]["center"])
            for c in changes} == {(t["pump_serial"], t["id"], t["pump_serial"], "C1")}


def test_explant_stops_the_therapy(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    t = setup_therapy(h, bus, start_on="2026-11-20")
    emit(h, bus, EventType.PUMP_EXPLANTED, pump_explanted("SN1", "MRN1", reason="infection"))
    assert h.client.get(f"/v1/therapies/{t['id']}", headers=NURSE).json()["status"] == "stopped"
    assert [a["status"] for a in worklist(h)] == ["cancelled"]
    assert _refill(h, performed_at=T0.isoformat()).status_code == 409
