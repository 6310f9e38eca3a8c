"""A refill entered in error (CONTRACT.md, Scheduling; DOMAIN.md, Safety rules: corrections):
the row stays, its reading leaves every figure, its appointments are put back, and the fact is
announced. SQLite and the in-process bus, with a moved clock."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from shared.events import PHARMACY_EXCHANGE, EventType
from tests.factories import T0
from tests.helpers import Harness, auth, start
from tests.helpers import test_settings as settings_for
from tests.unit.scheduling.scheduling_support import (
    NURSE,
    ONCOLOGIST,
    outbox,
    setup_therapy,
    worklist,
)


def refill(h: Harness, days_before_t0: float, residual_ml: float, fill_type: str = "saline",
           **extra: Any) -> dict[str, Any]:
    r = h.client.post("/v1/refills", headers=NURSE, json={
        "pump_serial": "SN1", "performed_at": (T0 - timedelta(days=days_before_t0)).isoformat(),
        "residual_volume_ml": residual_ml, "fill_volume_ml": 30, "fill_type": fill_type, **extra})
    assert r.status_code == 201, r.text
    return dict(r.json())


def void(h: Harness, refill_id: str, reason: str = "wrong pump scanned",
         headers: dict[str, str] = NURSE) -> Any:
    return h.client.post(f"/v1/refills/{refill_id}/entered-in-error", json={"reason": reason},
                         headers=headers)


def appointment(h: Harness, appt_id: str) -> dict[str, Any]:
    r = h.client.get(f"/v1/appointments/{appt_id}", headers=NURSE)
    assert r.status_code == 200, r.text
    return dict(r.json())


def flow_series(h: Harness) -> list[dict[str, Any]]:
    r = h.client.get("/v1/pumps/SN1/flow-readings", headers=NURSE)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def test_latest_refill_entered_in_error_leaves_every_figure(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    setup_therapy(h, bus, regimen="saline_maintenance", start_on="2026-11-02")  # 1.0 mL/day
    first = refill(h, 20, 0)
    # 14 days at 1.5 mL/day: +50 %
    second = refill(h, 6, 30 - 14 * 1.5)
    assert second["measured_flow_ml_per_day"] == 1.5 and len(flow_series(h)) == 1
    completed, created = second["appointment_id"], second["next_appointment"]["id"]

    older = void(h, first["id"])
    assert older.status_code == 409 and second["id"] in older.json()["detail"]
    assert older.json()["latest_refill_id"] == second["id"]

    r = void(h, second["id"], reason="  residual of another patient's pump  ")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "entered_in_error" and body["voided_by"] == "nina"
    assert body["void_reason"] == "residual of another patient's pump" and body["voided_at"]
    # the row stays for the audit, with its figures as recorded
    kept = h.client.get(f"/v1/refills/{second['id']}", headers=NURSE).json()
    assert kept["status"] == "entered_in_error" and kept["measured_flow_ml_per_day"] == 1.5
    listed = h.client.get("/v1/refills", params={"pump_serial": "SN1"}, headers=NURSE).json()
    assert [(i["id"], i["status"]) for i in listed["items"]] == [
        (second["id"], "entered_in_error"), (first["id"], "recorded")]
    assert flow_series(h) == []
    assert appointment(h, created)["status"] == "cancelled"
    reopened = appointment(h, completed)
    assert reopened["status"] == "scheduled" and reopened["refill_id"] is None
    assert [a["id"] for a in worklist(h, status="scheduled")] == [completed]

    [voided] = outbox(h, EventType.REFILL_VOIDED)
    assert voided["subject"] == "SN1"
    assert {k: voided["data"][k] for k in ("refill_id", "pump_serial", "patient_mrn", "center",
                                           "reason", "voided_by", "cancelled_appointment_id",
                                           "reopened_appointment_id")} == {
        "refill_id": second["id"], "pump_serial": "SN1", "patient_mrn": "MRN1", "center": "C1",
        "reason": "residual of another patient's pump", "voided_by": "nina",
        "cancelled_appointment_id": created, "reopened_appointment_id": completed}
    assert voided["data"]["voided_at"] == "2026-11-02T08:00:00Z"
    assert outbox(h, EventType.APPOINTMENT_SCHEDULED)[-1]["data"]["id"] == completed

    again = void(h, second["id"])
    assert again.status_code == 409 and "already entered in error" in again.json()["detail"]
    assert len(outbox(h, EventType.REFILL_VOIDED)) == 1

    # recorded again, right: the previous fill is the first refill, not the voided one
    fixed = refill(h, 6, 16, appointment_id=completed)
    assert fixed["measured_flow_ml_per_day"] == 1.0 and fixed["elapsed_days"] == 14.0
    assert [(f["refill_id"], f["measured_flow_ml_per_day"]) for f in flow_series(h)] == [
        (fixed["id"], 1.0)]


def test_entered_in_error_roles_and_answers(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    setup_therapy(h, bus, regimen="saline_maintenance", start_on="2026-11-02")
    first = refill(h, 6, 0)
    assert void(h, first["id"], headers=auth("pharmacist")).status_code == 403
    assert void(h, first["id"], headers=auth("biomed")).status_code == 403
    assert void(h, "no-such-refill").status_code == 404
    blank = h.client.post(f"/v1/refills/{first['id']}/entered-in-error", json={"reason": "  "},
                          headers=NURSE)
    assert blank.status_code == 422 and blank.json()["errors"][0]["field"] == "reason"
    assert h.client.post(f"/v1/refills/{first['id']}/entered-in-error", json={},
                         headers=NURSE).status_code == 422
    r = void(h, first["id"], headers=ONCOLOGIST)
    assert r.status_code == 200 and r.json()["voided_by"] == "dr-oz"


def test_voiding_cancels_the_order_of_the_appointment_it_created(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    setup_therapy(h, bus, start_on="2026-11-02")  # FUDR alternating: first fill chemo, ordered
    [first_order] = outbox(h, EventType.ORDER_REQUESTED)
    filled = refill(h, 12, 0)  # a saline fill: the next one, chemo, is due in 2 days: ordered
    [_, order] = outbox(h, EventType.ORDER_REQUESTED)
    nxt = filled["next_appointment"]["id"]
    assert order["data"]["appointment_id"] == nxt
    r = void(h, filled["id"], reason="recorded on the wrong patient")
    assert r.status_code == 200, r.text
    [cancelled] = outbox(h, EventType.ORDER_CANCELLED)
    assert cancelled["exchange"] == PHARMACY_EXCHANGE
    assert cancelled["data"]["order_id"] == order["data"]["order_id"]
    delivery = h.client.get(f"/v1/deliveries/{order['data']['order_id']}", headers=NURSE).json()
    assert delivery["status"] == "cancelled"
    # the reopened first appointment keeps its own order
    reopened = appointment(h, filled["appointment_id"])
    assert reopened["status"] == "scheduled"
    assert reopened["delivery_id"] == first_order["data"]["order_id"]
    assert h.client.get(f"/v1/deliveries/{first_order['data']['order_id']}",
                        headers=NURSE).json()["status"] == "requested"


def test_the_dose_uses_the_latest_flow_not_a_voided_one(tmp_path: Path) -> None:
    from services.scheduling.jobs import sweep

    h, bus = start("scheduling", settings_for(tmp_path))
    setup_therapy(h, bus, start_on="2026-11-02")
    refill(h, 20, 0)
    # saline, 16 days later at 1.5 mL/day, then entered in error: the fill was a day earlier
    wrong = refill(h, 4, 30 - 16 * 1.5)
    assert wrong["measured_flow_ml_per_day"] == 1.5
    assert void(h, wrong["id"]).status_code == 200
    right = refill(h, 5, 15)  # 15 days at 1 mL/day
    assert right["measured_flow_ml_per_day"] == 1.0
    nxt = right["next_appointment"]
    assert nxt["fill_type"] == "chemo"
    h.clock.set(T0 + timedelta(days=7))  # type: ignore[attr-defined]
    sweep(h.runtime)
    order = [o for o in outbox(h, EventType.ORDER_REQUESTED)
             if o["data"]["appointment_id"] == nxt["id"]]
    assert len(order) == 1
    assert order[0]["data"]["pump"]["flow_ml_per_day"] == 1.0
    [fudr] = [d for d in order[0]["data"]["drugs"] if d["code"] == "floxuridine"]
    assert fudr["amount"] == 252.0  # 0.12 mg/kg/day x 70 kg x 30 mL / 1.0 mL/day


def test_the_reopened_appointment_is_announced_again_by_the_sweep(tmp_path: Path) -> None:
    from services.scheduling.jobs import sweep

    h, bus = start("scheduling", settings_for(tmp_path))
    setup_therapy(h, bus, regimen="saline_maintenance", start_on="2026-11-02")
    refill(h, 20, 0)  # the next one was due 6 days ago
    sweep(h.runtime)
    [overdue] = outbox(h, EventType.REFILL_OVERDUE)
    second = refill(h, 1, 30 - 19 * 1.0)
    assert second["appointment_id"] == overdue["data"]["id"]
    assert void(h, second["id"]).status_code == 200
    sweep(h.runtime)
    # the refill that completed it was wrong: it is overdue still, and alerts must hear it again
    assert [e["data"]["id"] for e in outbox(h, EventType.REFILL_OVERDUE)] == [
        overdue["data"]["id"]] * 2


def test_a_voided_chemo_fill_gives_its_bag_back_to_the_reopened_appointment(tmp_path: Path) -> None:
    from tests.unit.scheduling.scheduling_support import dispatch

    h, bus = start("scheduling", settings_for(tmp_path))
    setup_therapy(h, bus, start_on="2026-11-02")  # chemo due today: ordered at once
    [appt] = worklist(h)
    order_id = appt["delivery_id"]
    dispatch(h, order_id, lot="LOT-42")
    chemo = refill(h, 0, 0, fill_type="chemo", delivery_id=order_id)
    used = h.client.get(f"/v1/deliveries/{order_id}", headers=NURSE).json()
    assert used["refill_id"] == chemo["id"] and used["status"] == "delivered"
    assert void(h, chemo["id"], reason="recorded on the wrong pump").status_code == 200
    back = h.client.get(f"/v1/deliveries/{order_id}", headers=NURSE).json()
    assert back["status"] == "delivered"  # the bag was delivered; only its use is withdrawn
    assert back["refill_id"] is None and back["administered_at"] is None
    assert outbox(h, EventType.DELIVERY_UPDATED)[-1]["data"]["refill_id"] is None
    assert appointment(h, appt["id"])["status"] == "scheduled"
    again = refill(h, 0, 0, fill_type="chemo", delivery_id=order_id)  # the same bag, rightly
    assert h.client.get(f"/v1/deliveries/{order_id}",
                        headers=NURSE).json()["refill_id"] == again["id"]
