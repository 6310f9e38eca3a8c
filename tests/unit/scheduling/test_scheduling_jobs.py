"""The sweep driven by a moved clock: each fact once, orders at lead time, late deliveries,
the heartbeat and the readiness check; and the pharmacy's statuses through the queue."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from services.scheduling.jobs import sweep
from shared.events import PHARMACY_EXCHANGE, EventType
from tests.factories import T0
from tests.helpers import deliver, publish, start
from tests.helpers import test_settings as settings_for
from tests.unit.scheduling.scheduling_support import (
    NURSE,
    PHARMACIST,
    outbox,
    setup_therapy,
    worklist,
)


def test_due_soon_overdue_near_empty_each_once(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    setup_therapy(h, bus, start_on="2026-11-05", regimen="saline_maintenance")  # due T0+2d16h
    clock = h.clock
    r = h.client.post("/v1/refills", headers=NURSE, json={
        "pump_serial": "SN1", "performed_at": (T0 - timedelta(days=1)).isoformat(),
        "residual_volume_ml": 0, "fill_volume_ml": 5, "fill_type": "saline"})
    assert r.status_code == 201
    nxt = r.json()["next_appointment"]
    # 5 mL at 1 mL/day: empty at T0+4d, so due 72 h before it (T0+1d), not at T0+13d
    assert nxt["due_at"] == "2026-11-03T08:00:00Z" and nxt["due_basis"] == "projected_empty"
    sweep(h.runtime)
    sweep(h.runtime)
    [soon] = outbox(h, EventType.REFILL_DUE_SOON)  # due in 24 h
    assert soon["data"]["id"] == nxt["id"] and soon["data"]["due_basis"] == "projected_empty"
    assert outbox(h, EventType.RESERVOIR_NEAR_EMPTY) == []
    assert outbox(h, EventType.REFILL_OVERDUE) == []
    clock.advance(days=1, hours=1)  # type: ignore[attr-defined]
    sweep(h.runtime)
    sweep(h.runtime)
    [near] = outbox(h, EventType.RESERVOIR_NEAR_EMPTY)
    assert near["data"]["pump_serial"] == "SN1" and near["data"]["hours_to_empty"] == 71.0
    [late] = outbox(h, EventType.REFILL_OVERDUE)
    assert soon["data"]["id"] == late["data"]["id"] == near["data"]["id"]
    assert late["data"]["overdue_hours"] == 1.0 and late["data"]["hours_to_empty"] == 71.0
    clock.set(T0 + timedelta(days=14, hours=1))  # type: ignore[attr-defined]
    sweep(h.runtime)
    sweep(h.runtime)
    assert len(outbox(h, EventType.REFILL_DUE_SOON)) == 1
    assert len(outbox(h, EventType.REFILL_OVERDUE)) == 1
    assert len(outbox(h, EventType.RESERVOIR_NEAR_EMPTY)) == 1
    beats = outbox(h, EventType.SWEEP_COMPLETED)
    assert len(beats) == 6
    jobs = beats[-1]["data"]["jobs"]
    assert [j["name"] for j in jobs] == ["due_soon", "overdue", "near_empty", "orders",
                                         "late_deliveries"]
    assert all(j["ok"] for j in jobs)


def test_orders_at_lead_time_and_late_delivery(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    setup_therapy(h, bus, start_on="2026-11-10")  # chemo due T0+7d16h
    sweep(h.runtime)
    assert outbox(h, EventType.ORDER_REQUESTED) == []
    h.clock.advance(days=4, hours=17)  # type: ignore[attr-defined]  # 2d23h before due
    sweep(h.runtime)
    sweep(h.runtime)
    [order] = outbox(h, EventType.ORDER_REQUESTED)
    assert worklist(h)[0]["delivery_id"] == order["data"]["order_id"]
    h.clock.advance(days=2, hours=12)  # type: ignore[attr-defined]  # 11 h before needed_by
    sweep(h.runtime)
    sweep(h.runtime)
    [late] = outbox(h, EventType.DELIVERY_LATE)
    assert late["data"]["id"] == order["data"]["order_id"] and late["data"]["center"] == "C1"
    assert late["data"]["status"] == "requested"


def test_failing_job_is_reported_and_others_run(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    setup_therapy(h, bus, start_on="2026-11-03", regimen="saline_maintenance")
    from services.scheduling import jobs

    def broken(uow: Any, settings: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    original = jobs.SUB_JOBS[:]
    jobs.SUB_JOBS[0] = ("due_soon", broken)
    try:
        facts = sweep(h.runtime)
    finally:
        jobs.SUB_JOBS[:] = original
    assert facts["ok"] is False
    beat = outbox(h, EventType.SWEEP_COMPLETED)[-1]["data"]["jobs"]
    assert beat[0] == {"name": "due_soon", "ok": False, "facts": {"error": "RuntimeError"}}
    assert all(j["ok"] for j in beat[1:])
    sweep(h.runtime)  # retried next sweep
    assert len(outbox(h, EventType.REFILL_DUE_SOON)) == 1


def test_readyz_reports_a_sweep_that_has_not_run(tmp_path: Path) -> None:
    h, _ = start("scheduling", settings_for(tmp_path, sweep_interval_seconds=60))
    assert h.client.get("/readyz").status_code == 200  # just started
    h.clock.advance(seconds=181)  # type: ignore[attr-defined]
    r = h.client.get("/readyz")
    assert r.status_code == 503 and "scheduler_sweep" in r.json()["down"]
    sweep(h.runtime)
    assert h.client.get("/readyz").status_code == 200
    h.clock.advance(seconds=179)  # type: ignore[attr-defined]
    assert h.client.get("/readyz").status_code == 200
    h.clock.advance(seconds=2)  # type: ignore[attr-defined]
    assert h.client.get("/readyz").status_code == 503


def _status(bus: Any, order_id: str, status: str, at: datetime, **extra: Any) -> Any:
    return publish(bus, EventType.ORDER_STATUS,
                {"order_id": order_id, "status": status, "at": at.isoformat(), **extra},
                exchange=PHARMACY_EXCHANGE, subject=order_id)


def test_pharmacy_statuses_through_the_queue(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    setup_therapy(h, bus, start_on="2026-11-03")
    order_id = worklist(h)[0]["delivery_id"]
    deliver([h], bus)
    assert bus.take("pharmacy.orders")  # the pharmacy's queue got the order
    t = T0
    _status(bus, order_id, "accepted", t + timedelta(minutes=1))
    _status(bus, order_id, "compounded", t + timedelta(minutes=2), lot="L7",
            beyond_use_at=(t + timedelta(days=14)).isoformat())
    _status(bus, order_id, "compounded", t + timedelta(minutes=2), lot="L7")  # duplicate
    _status(bus, order_id, "dispatched", t + timedelta(minutes=3))
    _status(bus, order_id, "delivered", t + timedelta(minutes=4))
    _status(bus, order_id, "accepted", t + timedelta(minutes=1, seconds=30))  # out of order
    _status(bus, "no-such-order", "accepted", t)
    publish(bus, EventType.ORDER_STATUS, {"order_id": order_id, "status": "lost", "at": "yesterday"},
         exchange=PHARMACY_EXCHANGE)
    outcomes = deliver([h], bus)
    assert sorted(o.action for o in outcomes).count("dead_letter") == 2
    d = h.client.get(f"/v1/deliveries/{order_id}", headers=NURSE).json()
    assert d["status"] == "delivered" and d["lot"] == "L7"
    assert [(x["status"], x["applied"]) for x in d["history"]] == [
        ("requested", True), ("accepted", True), ("compounded", True), ("dispatched", True),
        ("delivered", True), ("accepted", False)]
    assert "not applied: order already delivered" in d["history"][-1]["reason"]
    updates = outbox(h, EventType.DELIVERY_UPDATED)
    assert [u["data"]["status"] for u in updates] == ["requested", "accepted", "compounded",
                                                      "dispatched", "delivered"]
    reasons = [o.reason or "" for o in outcomes if o.action == "dead_letter"]
    assert any("unknown order_id 'no-such-order'" in r for r in reasons)
    assert any("malformed" in r and "status" in r for r in reasons)


def test_pharmacy_status_over_http(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    setup_therapy(h, bus, start_on="2026-11-03")
    order_id = worklist(h)[0]["delivery_id"]
    url = f"/v1/deliveries/{order_id}/status"
    body = {"status": "rejected", "at": T0.isoformat(), "reason": "dose outside protocol"}
    assert h.client.post(url, json=body, headers=NURSE).status_code == 403
    r = h.client.post(url, json=body, headers=PHARMACIST)
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert h.client.post(url, json=body, headers=PHARMACIST).status_code == 200  # duplicate
    late = h.client.post(url, json={"status": "accepted", "at": T0.isoformat()}, headers=PHARMACIST)
    assert late.status_code == 409 and "rejected" in late.json()["detail"]
    assert late.json()["current_status"] == "rejected"
    # answered 409, and still recorded: the request's transaction committed the late status
    history = h.client.get(f"/v1/deliveries/{order_id}", headers=NURSE).json()["history"]
    assert (history[-1]["status"], history[-1]["applied"]) == ("accepted", False)
    assert h.client.post("/v1/deliveries/nope/status", json=body,
                         headers=PHARMACIST).status_code == 404
    [rejected] = [u for u in outbox(h, EventType.DELIVERY_UPDATED) if u["data"]["status"] == "rejected"]
    assert rejected["data"]["history"][-1]["reason"] == "dose outside protocol"
