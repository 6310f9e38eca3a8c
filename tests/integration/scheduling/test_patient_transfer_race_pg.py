"""A transfer racing a refill on PostgreSQL: the refill has claimed the patient's appointment and
written the next one, not yet committed, when the transfer comes. The transfer waits for it and
then moves the next appointment too (a read that began before the refill committed would miss
it and leave the patient's next refill on the old centre's worklist)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select, text, update

from services.scheduling.models import Appointment
from tests.helpers import auth, start, test_settings, wait_until
from tests.unit.scheduling.scheduling_support import setup_therapy, worklist

BOTH = auth("nurse", sub="mover", centers=["C1", "C2"])


def test_a_transfer_waits_for_a_refill_under_way_and_moves_its_next_appointment(
        tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    url = pg_database("scheduling")
    h, bus = start("scheduling", test_settings(tmp_path, scheduling_database_url=url,
                                               db_lock_timeout_ms=30_000))
    setup_therapy(h, bus, start_on="2026-11-04", regimen="saline_maintenance")
    [appt] = worklist(h)
    engine = h.runtime.engine
    refill = engine.connect()
    tx = refill.begin()
    # a refill's transaction: its appointment claimed, the next one written
    refill.execute(update(Appointment).where(Appointment.id == appt["id"])
                   .values(status="completed"))
    row = dict(refill.execute(select(Appointment.__table__).where(
        Appointment.id == appt["id"])).mappings().one())
    refill.execute(Appointment.__table__.insert().values(
        {**row, "id": "next-appt", "status": "scheduled"}))
    answer: dict[str, Any] = {}

    def move() -> None:
        answer["r"] = h.client.patch("/v1/patients/MRN1", json={"center": "C2"}, headers=BOTH)

    mover = threading.Thread(target=move)
    mover.start()


    def waiting() -> bool:
        with engine.connect() as probe:  # a new transaction: a fresh view of the activity
            return bool(probe.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'")).scalar_one())

    wait_until(waiting, what="the transfer to wait for the refill's lock", timeout_s=20)
    tx.commit()
    refill.close()
    mover.join(timeout=60)
    assert answer["r"].status_code == 200, answer["r"].text
    with engine.connect() as conn:
        centres = dict(conn.execute(select(Appointment.id, Appointment.center)).all())
    assert centres == {appt["id"]: "C1", "next-appt": "C2"}
