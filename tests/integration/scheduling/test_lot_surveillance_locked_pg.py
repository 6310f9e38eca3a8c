"""A refill is never refused because flow surveillance's rows are locked (the daily rebuild
holds them): the reading is recorded, its surveillance update skipped, the next rebuild counts it.
PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
from sqlalchemy import select
from sqlalchemy.engine import make_url

from services.scheduling import drift
from services.scheduling.models import FlowPumpStats
from shared.clock import MovableClock
from tests.factories import T0
from tests.helpers import start
from tests.helpers import test_settings as settings_for
from tests.unit.scheduling.test_lot_surveillance import pump_with_readings, refill


def test_a_refill_goes_through_while_the_surveillance_rows_are_locked(
        tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    url = pg_database("scheduling")
    clock = MovableClock(T0)
    h, bus = start("scheduling", settings_for(tmp_path, scheduling_database_url=url), clock)
    pump_with_readings(h, bus, "A0", "LOT-A", [8.0, 10.0])

    def readings() -> int:
        with h.runtime.uow_factory() as uow:
            return uow.session.scalars(select(FlowPumpStats.readings)).one()

    assert readings() == 2
    u = make_url(url)
    with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database) as holder:
        holder.execute("SELECT * FROM flow_pump_stats FOR UPDATE")  # as a rebuild's DELETE would
        clock.advance(days=14)
        refill(h, "A0", -13, 30 - 14 * 1.09)  # 14 days after the last fill, at +9 %
    assert readings() == 2  # skipped, not refused
    with h.runtime.uow_factory() as uow:
        drift.rebuild(uow, h.runtime.settings)
        uow.commit()
    assert readings() == 3


def test_a_reading_takes_its_lot_s_row_last_in_its_transaction(
        tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    """Every reading of a lot updates the lot's one row, whose lock it then holds until its
    commit: the update is the transaction's last data statement, so that concurrent readings of
    a lot queue only for each other's commit, not for the rest of each other's refill."""
    from typing import Any

    from sqlalchemy import event as sa_event

    clock = MovableClock(T0)
    h, bus = start("scheduling", settings_for(tmp_path, scheduling_database_url=pg_database(
        "scheduling")), clock)
    pump_with_readings(h, bus, "A0", "LOT-A", [8.0])
    seen: list[str] = []

    def executed(_conn: Any, _cur: Any, statement: str, *_: Any) -> None:
        seen.append(" ".join(statement.split())[:60])

    sa_event.listen(h.runtime.engine, "before_cursor_execute", executed)
    clock.advance(days=14)
    refill(h, "A0", -13, 30 - 14 * 1.09)
    sa_event.remove(h.runtime.engine, "before_cursor_execute", executed)
    lot = max(i for i, s in enumerate(seen) if "INSERT INTO flow_lot_stats" in s)
    assert seen[lot + 1:] and all(s.startswith(("RELEASE SAVEPOINT", "INSERT INTO idempotency"))
                                  for s in seen[lot + 1:]), seen
