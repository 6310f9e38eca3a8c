"""What raising an alert costs the alerts process: SQL statements and CPU seconds of this process
for N `refill.overdue` events (each raising and paging one alert) handled by the alerts consumer
in batches of HAI_ALERTS_CONSUMER_BATCH, on PostgreSQL, in process (no broker: the consumer's
batches are handed to it directly). In a burst the alerts process is bound by exactly this (issue
25). CPU seconds and statements, not wall time: they do not depend on what else the machine runs.

    .venv/bin/python -m bench.alerts_raise [N]
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event as sa_event

import shared.db as shared_db
from bench._infra import database
from shared.clock import MovableClock
from shared.events import EventType
from shared.messaging.consumer import EventConsumer
from shared.messaging.inproc import InProcessBus
from tests.factories import T0, oncall_body, refill_overdue
from tests.helpers import publish, start_service
from tests.helpers import test_settings as make_settings

BATCH = 20
CENTERS = ("north", "south")


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(events: int = 500) -> dict[str, Any]:
    """Handle `events` overdue refills (distinct pumps, patients, two centres) in batches."""
    with tempfile.TemporaryDirectory() as tmp, database("alerts_raise") as url:
        settings = make_settings(Path(tmp), alerts_database_url=url)
        bus = InProcessBus()
        h = start_service("alerts", settings, clock=MovableClock(T0), bus=bus)
        rt = h.runtime
        try:
            for center in CENTERS:
                r = h.client.put(f"/v1/oncall/{center}", headers=_oncall_headers(),
                                 json=oncall_body([("ann", "log", "ann")], [("bob", "log", "bob")]))
                assert r.status_code == 200, r.text
            bus.declare(rt.all_queues())
            (sub,) = [s for s in rt.subscriptions if EventType.REFILL_OVERDUE in s.handlers
                      and s.queue.name == "alerts.events"]
            consumer = EventConsumer(sub.queue.name, sub.queue, sub.handlers, rt.uow_factory,
                                     max_attempts=3, batch_handlers=sub.batch_handlers)
            for i in range(events):
                publish(bus, EventType.REFILL_OVERDUE, refill_overdue(
                    f"appt-{i}", f"SN{i:05}", mrn=f"MRN-{i}", center=CENTERS[i % 2],
                    hours_to_empty=5.0), time=rt.clock.now())
            statements = 0

            def counted(*_: Any) -> None:
                nonlocal statements
                statements += 1

            sa_event.listen(rt.engine, "before_cursor_execute", counted)
            # a COPY (`bulk_insert` of more than one row) runs on the driver's connection,
            # unseen by the engine's events: counted here
            bulk_insert = shared_db.bulk_insert

            def copying(session: Any, table: Any, rows: Any) -> None:
                nonlocal statements
                statements += len(rows) > 1
                bulk_insert(session, table, rows)

            shared_db.bulk_insert = copying
            cpu0, wall0 = _cpu_s(), time.monotonic()
            handled = 0
            while batch := bus.take(sub.queue.name, limit=BATCH):
                outcomes = consumer.process(batch)
                assert all(o.action == "ack" for o in outcomes), outcomes
                handled += len(batch)
            cpu, wall = _cpu_s() - cpu0, time.monotonic() - wall0
            sa_event.remove(rt.engine, "before_cursor_execute", counted)
            shared_db.bulk_insert = bulk_insert
        finally:
            rt.engine.dispose()
    figures = {"events": handled, "batch": BATCH, "statements": statements,
               "statements_per_alert": round(statements / handled, 2),
               "cpu_s": round(cpu, 2), "cpu_ms_per_alert": round(cpu * 1000 / handled, 2),
               "wall_s": round(wall, 2)}
    print(figures)
    return figures


def _oncall_headers() -> dict[str, str]:
    from tests.integration.alerts.alerts_testkit import ONCALL

    return ONCALL


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
