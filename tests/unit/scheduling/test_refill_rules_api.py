"""The refill safety rules through scheduling's API (SQLite, in-process bus): a chemo fill only
with its dispatched delivery, no second fill minutes after the first, and the next refill due
before the pump runs dry."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from shared.events import EventType
from tests.factories import T0
from tests.helpers import start
from tests.helpers import test_settings as settings_for
from tests.unit.scheduling.scheduling_support import (
    NURSE,
    dispatch,
    outbox,
    setup_therapy,
    worklist,
)


def _refill(h: Any, **kw: Any) -> Any:
    body = {"pump_serial": "SN1", "residual_volume_ml": 0, "fill_volume_ml": 30,
            "fill_type": "saline", "performed_at": T0.isoformat(), **kw}
    return h.client.post("/v1/refills", json=body, headers=NURSE)


def _field(r: Any) -> list[str]:
    assert r.status_code == 422, r.text
    return [e["field"] for e in r.json()["errors"]]


def _delivery(h: Any, order_id: str) -> dict[str, Any]:
    return dict(h.client.get(f"/v1/deliveries/{order_id}", headers=NURSE).json())


def test_chemo_fill_needs_its_dispatched_delivery_and_marks_it_delivered(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    setup_therapy(h, bus, start_on="2026-11-02")  # chemo due today: ordered at once
    [appt] = worklist(h)
    order_id = appt["delivery_id"]
    no_order = _refill(h, fill_type="chemo")
    assert _field(no_order) == ["delivery_id"] and "label" in no_order.json()["detail"]
    requested = _refill(h, fill_type="chemo", delivery_id=order_id)
    assert _field(requested) == ["delivery_id"] and "is requested" in requested.json()["detail"]
    assert _field(_refill(h, fill_type="chemo", delivery_id="ord-nope")) == ["delivery_id"]
    assert _delivery(h, order_id)["status"] == "requested"  # the refusals changed nothing
    assert worklist(h)[0]["status"] == "scheduled"
    assert h.client.get("/v1/refills", headers=NURSE).json()["items"] == []

    dispatch(h, order_id, lot="LOT-42")
    before = len(outbox(h, EventType.DELIVERY_UPDATED))
    r = _refill(h, fill_type="chemo", delivery_id=order_id)
    assert r.status_code == 201, r.text
    refill = r.json()
    d = _delivery(h, order_id)
    assert d["status"] == "delivered" and d["lot"] == "LOT-42"
    assert d["refill_id"] == refill["id"] and d["administered_at"] == "2026-11-02T08:00:00Z"
    assert [x["status"] for x in d["history"]] == ["requested", "dispatched", "delivered"]
    assert refill["id"] in d["history"][-1]["reason"]
    [event] = outbox(h, EventType.DELIVERY_UPDATED)[before:]
    assert event["data"]["status"] == "delivered" and event["data"]["refill_id"] == refill["id"]
    assert event["data"]["administered_at"] == "2026-11-02T08:00:00Z"


def test_chemo_fill_with_an_order_already_delivered_only_links_it(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    setup_therapy(h, bus, start_on="2026-11-02")
    order_id = worklist(h)[0]["delivery_id"]
    dispatch(h, order_id, status="delivered")
    r = _refill(h, fill_type="chemo", delivery_id=order_id)
    assert r.status_code == 201, r.text
    d = _delivery(h, order_id)
    assert d["status"] == "delivered" and d["refill_id"] == r.json()["id"]
    assert [x["status"] for x in d["history"]] == ["requested", "delivered"]


def test_chemo_fill_refuses_another_patients_bag_and_an_expired_one(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    setup_therapy(h, bus, start_on="2026-11-02")
    setup_therapy(h, bus, "MRN2", "SN2", start_on="2026-11-02")
    mine, theirs = (a["delivery_id"] for a in sorted(worklist(h), key=lambda a: a["patient_mrn"]))
    dispatch(h, theirs)
    dispatch(h, mine, beyond_use_at=T0 - timedelta(hours=1))
    other = _refill(h, fill_type="chemo", delivery_id=theirs)
    assert _field(other) == ["delivery_id"] and "not the one ordered" in other.json()["detail"]
    expired = _refill(h, fill_type="chemo", delivery_id=mine)
    assert _field(expired) == ["delivery_id"] and "beyond-use" in expired.json()["detail"]
    assert _delivery(h, theirs)["status"] == "dispatched"
    assert _delivery(h, mine)["status"] == "dispatched" and _delivery(h, mine)["refill_id"] is None


def test_a_second_refill_minutes_later_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    setup_therapy(h, bus, start_on="2026-11-03", regimen="saline_maintenance")
    first = _refill(h, performed_at=(T0 - timedelta(minutes=4)).isoformat())
    assert first.status_code == 201, first.text
    events = len(outbox(h))
    again = _refill(h, residual_volume_ml=29.8)  # 4 minutes later: "36 mL/day, +3500 %"
    assert _field(again) == ["performed_at"]
    detail = again.json()["detail"]
    assert "at least 24 h apart" in detail
    assert f"POST /v1/refills/{first.json()['id']}/entered-in-error" in detail
    assert len(outbox(h)) == events and outbox(h, EventType.FLOW_RECORDED) == []
    assert [a["due_at"] for a in worklist(h, status="scheduled")] == [
        first.json()["next_appointment"]["due_at"]]
    h.clock.advance(days=1)  # type: ignore[attr-defined]
    later = _refill(h, performed_at=(T0 + timedelta(hours=20)).isoformat(), residual_volume_ml=29)
    assert _field(later) == ["performed_at"]  # 20 h 4 min: still too soon
    ok = _refill(h, performed_at=(T0 + timedelta(days=1)).isoformat(), residual_volume_ml=29)
    assert ok.status_code == 201, ok.text


def test_next_refill_is_due_before_the_pump_runs_dry(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    t = setup_therapy(h, bus, start_on="2026-11-03", regimen="saline_maintenance")
    [first] = worklist(h)
    assert first["due_basis"] == "interval"  # a new therapy's first fill: its start
    [scheduled] = outbox(h, EventType.APPOINTMENT_SCHEDULED)
    assert scheduled["data"]["due_basis"] == "interval"
    one = _refill(h, performed_at=(T0 - timedelta(days=14)).isoformat())
    assert one.status_code == 201, one.text
    assert one.json()["next_appointment"]["due_basis"] == "interval"  # 30 days at 1 mL/day
    # 30 − 2 = 28 mL in 14 days: 2 mL/day, so 30 mL last 15 days; due 72 h before, not at 14 d
    two = _refill(h, residual_volume_ml=2)
    assert two.status_code == 201, two.text
    nxt = two.json()["next_appointment"]
    assert nxt["projected_empty_at"] == "2026-11-17T08:00:00Z"
    assert nxt["due_at"] == "2026-11-14T08:00:00Z" and nxt["due_basis"] == "projected_empty"
    event = outbox(h, EventType.APPOINTMENT_SCHEDULED)[-1]
    assert event["data"]["id"] == nxt["id"] and event["data"]["due_basis"] == "projected_empty"
    assert event["data"]["due_at"] == "2026-11-14T08:00:00Z"
    completed = outbox(h, EventType.REFILL_COMPLETED)[-1]
    assert completed["data"]["next_appointment"]["due_basis"] == "projected_empty"
    got = h.client.get(f"/v1/appointments/{nxt['id']}", headers=NURSE).json()
    assert got["due_basis"] == "projected_empty" and got["therapy_id"] == t["id"]

