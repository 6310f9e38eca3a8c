"""What raising an alert costs the alerts process: SQL statements and CPU seconds of this process
per alert raised and paged by the alerts consumers, on PostgreSQL, in process (no broker: the
batches are handed to the consumer directly). In a burst the alerts process is bound by exactly
this (issue 25). Two cases: `refill.overdue` events in batches of HAI_ALERTS_CONSUMER_BATCH (20)
as a sweep's burst comes, and abnormal flow readings one per transaction as they come. CPU
seconds and statements, not wall time: they hardly depend on what else the machine runs.

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
from shared.runtime import ServiceRuntime
from tests.factories import T0, flow_recorded, oncall_body, refill_overdue
from tests.helpers import publish, start_service
from tests.helpers import test_settings as make_settings
from tests.integration.alerts.alerts_testkit import ONCALL

CENTERS = ("north", "south")


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _measure(rt: ServiceRuntime, bus: InProcessBus, event_type: str,
             events: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    """Statements and CPU of this process to handle `events` in batches of `batch`."""
    (sub,) = [s for s in rt.subscriptions if event_type in s.handlers]
    consumer = EventConsumer(sub.queue.name, sub.queue, sub.handlers, rt.uow_factory,
                             max_attempts=3, batch_handlers=sub.batch_handlers,
                             prepare=sub.prepare)
    for data in events:
        publish(bus, event_type, data, time=rt.clock.now())
    statements = 0

    def counted(*_: Any) -> None:
        nonlocal statements
        statements += 1

    # a COPY (`bulk_insert` of more than one row) runs on the driver's connection, unseen by
    # the engine's events: counted here
    bulk_insert = shared_db.bulk_insert

    def copying(session: Any, table: Any, rows: Any) -> None:
        nonlocal statements
        statements += len(rows) > 1
        bulk_insert(session, table, rows)

    sa_event.listen(rt.engine, "before_cursor_execute", counted)
    shared_db.bulk_insert = copying
    try:
        cpu0, wall0 = _cpu_s(), time.monotonic()
        handled = 0
        while deliveries := bus.take(sub.queue.name, limit=batch):
            outcomes = consumer.process(deliveries)
            assert all(o.action == "ack" for o in outcomes), outcomes
            handled += len(deliveries)
        cpu, wall = _cpu_s() - cpu0, time.monotonic() - wall0
    finally:
        sa_event.remove(rt.engine, "before_cursor_execute", counted)
        shared_db.bulk_insert = bulk_insert
    return {"events": handled, "batch": batch, "statements": statements,
            "statements_per_alert": round(statements / handled, 2),
            "cpu_ms_per_alert": round(cpu * 1000 / handled, 2), "wall_s": round(wall, 2)}


def run(events: int = 500) -> dict[str, Any]:
    """`events` overdue refills (distinct pumps and patients, two centres) in batches of 20,
    then `events` abnormal flow readings one at a time."""
    with tempfile.TemporaryDirectory() as tmp, database("alerts_raise") as url:
        settings = make_settings(Path(tmp), alerts_database_url=url)
        bus = InProcessBus()
        h = start_service("alerts", settings, clock=MovableClock(T0), bus=bus)
        rt = h.runtime
        try:
            for center in CENTERS:
                r = h.client.put(f"/v1/oncall/{center}", headers=ONCALL,
                                 json=oncall_body([("ann", "log", "ann")], [("bob", "log", "bob")]))
                assert r.status_code == 200, r.text
            bus.declare(rt.all_queues())
            figures = {
                "overdue_batched": _measure(rt, bus, EventType.REFILL_OVERDUE, [
                    refill_overdue(f"appt-{i}", f"SN{i:05}", mrn=f"MRN-{i}",
                                   center=CENTERS[i % 2], hours_to_empty=5.0)
                    for i in range(events)], batch=20),
                "flow_one_by_one": _measure(rt, bus, EventType.FLOW_RECORDED, [
                    flow_recorded(f"FL{i:05}", 40, mrn=f"MRN-F{i}", center=CENTERS[i % 2])
                    for i in range(events)], batch=1),
            }
        finally:
            rt.engine.dispose()
    for case, values in figures.items():
        print(case, values)
    return figures


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
