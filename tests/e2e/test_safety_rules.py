"""The refill safety rules as stories on the production topology (PostgreSQL, RabbitMQ, every
API plus two workers per service): the pharmacy simulator dispatches, the nurse fills, and what
the other services hear is read back from the broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.events import EventType
from tests.doubles import EventTap, PharmacySimulator
from tests.e2e.story import chemo_patient, pump_on_therapy
from tests.e2e.topology import Topology
from tests.helpers import TRANSIENT, wait_until

CENTER = "E2E-SAFETY"


def _order_of(pharmacy: PharmacySimulator, serial: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        pharmacy.fetch_orders(timeout=2)
        return next((o for o in pharmacy.orders
                     if o["data"]["pump"]["serial_number"] == serial), None)
    return wait_until(probe,
        what=f"the pharmacy order for {serial}", timeout_s=30, ignoring=TRANSIENT)  # type: ignore[no-any-return]


def _field(r: Any) -> str:
    assert r.status_code == 422, r.text
    return str(r.json()["errors"][0]["field"])


def test_chemo_is_filled_only_from_its_dispatched_bag(system: Topology, e2e_amqp_url: str) -> None:
    serial, mrn = "SN-E2E-SAFE-1", "MRN-E2E-SAFE-1"
    tap = EventTap(e2e_amqp_url, EventType.DELIVERY_UPDATED)
    try:
        chemo_patient(system, serial, mrn, CENTER)
        pharmacy = PharmacySimulator(e2e_amqp_url)
        order_id = _order_of(pharmacy, serial)["data"]["order_id"]
        now = datetime.now(UTC)
        fill = {"pump_serial": serial, "performed_at": now.isoformat(), "residual_volume_ml": 0,
                "fill_volume_ml": 30, "fill_type": "chemo"}
        with system.client("scheduling", "nurse", sub="nurse-e2e") as sch:
            # the order is only requested: no bag can be in hand, with or without its scan
            assert _field(sch.post("/v1/refills", json=fill)) == "delivery_id"
            early = sch.post("/v1/refills", json={**fill, "delivery_id": order_id})
            assert _field(early) == "delivery_id" and "is requested" in early.json()["detail"]
            assert sch.get(f"/v1/deliveries/{order_id}").json()["status"] == "requested"

            bud = now + timedelta(days=2)
            pharmacy.send_status(order_id, "accepted")
            pharmacy.send_status(order_id, "compounded")
            pharmacy.send_status(order_id, "dispatched", lot="LOT-BAG-7", beyond_use_at=bud)
            wait_until(lambda: sch.get(
                f"/v1/deliveries/{order_id}").json()["status"] == "dispatched",
                    what="the bag to be dispatched", timeout_s=30, ignoring=TRANSIENT)
            r = sch.post("/v1/refills", json={**fill, "delivery_id": order_id})
            assert r.status_code == 201, r.text
            refill = r.json()
            assert refill["delivery_id"] == order_id
            assert refill["next_appointment"]["fill_type"] == "saline"
            d = sch.get(f"/v1/deliveries/{order_id}").json()
            assert d["status"] == "delivered" and d["lot"] == "LOT-BAG-7"
            assert d["refill_id"] == refill["id"]
            assert datetime.fromisoformat(d["administered_at"]) == now
            assert d["history"][-1]["status"] == "delivered"

        heard = wait_until(lambda: next(
            (e for e in tap.take() if e["data"]["id"] == order_id
             and e["data"]["status"] == "delivered"), None),
                 what="delivery.updated (delivered) on the broker", timeout_s=30, ignoring=TRANSIENT)
        assert heard["data"]["refill_id"] == refill["id"]
        assert [e["data"]["status"] for e in tap.seen if e["data"]["id"] == order_id][0] == "requested"
    finally:
        tap.close()


def test_a_second_refill_minutes_later_is_refused(system: Topology) -> None:
    serial, mrn = "SN-E2E-SAFE-2", "MRN-E2E-SAFE-2"
    pump_on_therapy(system, serial, mrn, CENTER, filled_days_ago=14)
    now = datetime.now(UTC)
    with system.client("scheduling", "nurse") as sch:
        first = sch.post("/v1/refills", json={
            "pump_serial": serial, "performed_at": (now - timedelta(minutes=4)).isoformat(),
            "residual_volume_ml": 16, "fill_volume_ml": 30, "fill_type": "saline"})
        assert first.status_code == 201, first.text
        scheduled = sch.get("/v1/appointments", params={"patient_mrn": mrn,
                                                        "status": "scheduled"}).json()["items"]
        assert [a["id"] for a in scheduled] == [first.json()["next_appointment"]["id"]]
        # typed again four minutes later: "elapsed 0.00 days, 36 mL/day, +3500 %"
        again = sch.post("/v1/refills", json={
            "pump_serial": serial, "performed_at": now.isoformat(),
            "residual_volume_ml": 29.9, "fill_volume_ml": 30, "fill_type": "saline"})
        assert _field(again) == "performed_at"
        detail = again.json()["detail"]
        assert "at least 24 h apart" in detail
        assert f"POST /v1/refills/{first.json()['id']}/entered-in-error" in detail
        # nothing moved: the same appointment, one reading, one refill on top
        assert sch.get("/v1/appointments", params={"patient_mrn": mrn, "status": "scheduled"}
                       ).json()["items"] == scheduled
        readings = sch.get(f"/v1/pumps/{serial}/flow-readings").json()["items"]
        assert [x["refill_id"] for x in readings] == [first.json()["id"]]
        latest = sch.get("/v1/refills", params={"pump_serial": serial}).json()["items"][0]
        assert latest["id"] == first.json()["id"]


def test_the_next_refill_comes_before_the_pump_runs_dry(system: Topology, e2e_amqp_url: str) -> None:
    serial, mrn = "SN-E2E-SAFE-3", "MRN-E2E-SAFE-3"
    tap = EventTap(e2e_amqp_url, EventType.APPOINTMENT_SCHEDULED)
    try:
        pump_on_therapy(system, serial, mrn, CENTER, filled_days_ago=14)
        now = datetime.now(UTC)
        with system.client("scheduling", "nurse") as sch:
            # 29 of 30 mL gone in 14 days: ~2.07 mL/day, so 30 mL last ~14.5 days; the
            # 14-day interval would come after the 72 h margin before empty
            r = sch.post("/v1/refills", json={
                "pump_serial": serial, "performed_at": now.isoformat(),
                "residual_volume_ml": 1, "fill_volume_ml": 30, "fill_type": "saline"})
            assert r.status_code == 201, r.text
            nxt = r.json()["next_appointment"]
            empty = datetime.fromisoformat(nxt["projected_empty_at"])
            due = datetime.fromisoformat(nxt["due_at"])
            assert nxt["due_basis"] == "projected_empty"
            assert due == empty - timedelta(hours=72)
            assert due < now + timedelta(days=14)
            got = sch.get(f"/v1/appointments/{nxt['id']}").json()
            assert got["due_basis"] == "projected_empty" and got["due_at"] == nxt["due_at"]
        heard = wait_until(lambda: next(
            (e for e in tap.take() if e["data"]["id"] == nxt["id"]), None),
                what="appointment.scheduled on the broker", timeout_s=30, ignoring=TRANSIENT)
        assert heard["data"]["due_basis"] == "projected_empty"
        assert datetime.fromisoformat(heard["data"]["due_at"]) == due
        first = next(e for e in tap.seen if e["data"]["pump_serial"] == serial)
        assert first["data"]["due_basis"] == "interval"  # the therapy's first fill
    finally:
        tap.close()
