"""The heartbeat's first row, on PostgreSQL: the watchdog and a consumer hearing the first
heartbeat may both find no row and both insert it; neither fails (it did: `IntegrityError` on
`heartbeats.source`), and the heartbeat heard is kept."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from services.alerts import service
from services.alerts.models import Heartbeat
from services.alerts.settings import AlertsSettings
from shared.clock import MovableClock
from shared.db import UnitOfWork
from shared.messaging.inproc import InProcessBus
from tests.factories import T0
from tests.integration.alerts.test_alerts_pg import pg_alerts


def heard(uow: UnitOfWork, settings: AlertsSettings) -> None:
    service.record_heartbeat(uow)


def watched(uow: UnitOfWork, settings: AlertsSettings) -> None:
    assert service.watchdog(uow, settings=settings)["started"]


@pytest.mark.parametrize(("first_one", "second_one"), [(heard, watched), (watched, heard)])
def test_the_first_heartbeat_row_is_inserted_race_safe(
        tmp_path, pg_database: Callable[[str], str],
        first_one: Callable[[UnitOfWork, AlertsSettings], None],
        second_one: Callable[[UnitOfWork, AlertsSettings], None]) -> None:
    clock = MovableClock(T0)
    h = pg_alerts(tmp_path, pg_database("alerts"), clock, InProcessBus())
    rt = h.runtime
    errors: list[BaseException] = []
    try:
        with rt.uow_factory() as first:
            # one (a consumer, or the watchdog) found no row, inserts it, has not committed yet
            first_one(first, rt.settings)
            first.session.flush()

            def watchdog() -> None:  # the other, at the same moment, finds no row either
                try:
                    with rt.uow_factory() as second:
                        second_one(second, rt.settings)
                        second.commit()
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            other = threading.Thread(target=watchdog)
            other.start()
            other.join(0.5)  # it waits on our uncommitted row
            first.commit()
        other.join(10)
        assert not other.is_alive() and errors == []

        with rt.uow_factory() as uow:
            rows = {r.source: r.last_heard_at for r in uow.session.query(Heartbeat)}
        assert rows == {"scheduling": T0}
    finally:
        rt.engine.dispose()
