"""A chemo fill and a pharmacy status on the same order at once, on PostgreSQL: the fill waits for
the order's row, so that it judges the status the pharmacy left, never overwrites it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text

from shared.clock import MovableClock
from tests.factories import T0
from tests.helpers import start, wait_until
from tests.helpers import test_settings as settings_for
from tests.unit.scheduling.scheduling_support import (
    NURSE,
    dispatch,
    implant,
    patient,
    therapy,
    worklist,
)


def test_a_cancellation_during_a_chemo_fill_is_judged_not_overwritten(
        tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    url = pg_database("scheduling")
    h, bus = start("scheduling", settings_for(tmp_path, scheduling_database_url=url), MovableClock(T0))
    patient(h)
    implant(h, bus)
    therapy(h, start_on="2026-11-02")  # chemo due today: ordered at once
    order_id = worklist(h)[0]["delivery_id"]
    dispatch(h, order_id)
    engine = h.runtime.engine
    answers: list[Any] = []

    def fill() -> None:
        answers.append(h.client.post("/v1/refills", headers=NURSE, json={
            "pump_serial": "SN1", "performed_at": T0.isoformat(), "residual_volume_ml": 0,
            "fill_volume_ml": 30, "fill_type": "chemo", "delivery_id": order_id}))

    def fill_waits_on_a_lock() -> bool:
        with engine.connect() as probe:
            return bool(probe.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'")))

    with engine.connect() as pharmacy:
        tx = pharmacy.begin()
        # the pharmacy's cancellation holds the order's row while the nurse saves the fill
        pharmacy.execute(text("SELECT id FROM deliveries WHERE id = :id FOR UPDATE"),
                         {"id": order_id})
        nurse = threading.Thread(target=fill)
        nurse.start()
        wait_until(fill_waits_on_a_lock, what="the fill to wait for the order's row")
        pharmacy.execute(text("UPDATE deliveries SET status = 'cancelled' WHERE id = :id"),
                         {"id": order_id})
        tx.commit()
    nurse.join(timeout=30)
    [answer] = answers
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["field"] == "delivery_id"
    assert "is cancelled" in answer.json()["detail"]
    d = h.client.get(f"/v1/deliveries/{order_id}", headers=NURSE).json()
    assert d["status"] == "cancelled" and d["refill_id"] is None and d["administered_at"] is None
    assert worklist(h)[0]["status"] == "scheduled"  # the appointment's claim rolled back
