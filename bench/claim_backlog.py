"""What one pager pass's claim costs behind a burst's backlog of due pages (issue 25): during a
sweep's burst every commit of the `alerts.events` consumers kicks a pager pass, and each pass
claims the next 50 due pages; PostgreSQL does that work at the page path's own CPU priority (the
bulk workers' `--nice 10` does not reach their database sessions). Sampled during `bench.burst`
(pg_stat_activity every 20 ms), the claim's SELECT was most of the alerts database's CPU.

On PostgreSQL, in process: `due` pending pages of overdue-refill alerts to one recipient, who
got `sent` pages in the last minute (25 to a message, as a storm's: 10 messages, so the minute
has room for 10 more, and each pass claims one message listing 50 pages), then `passes` claims
(each rolled back, so that every pass meets the same backlog): the wall time of a pass (the
database's time and this process's), this process's CPU, and the pass's statements.
Before 2026-12-03 22:40 UTC a pass read every due page whole (with its alert), sorted them
all, sized the storm limit's room once per page row (a count over the recipient's minute),
and claimed the 50 pages of a message in 50 UPDATEs.

    .venv/bin/python -m bench.claim_backlog [--due 1400] [--sent 250] [--passes 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import update

from bench._infra import database
from services.alerts import paging
from services.alerts.models import Notification
from shared.clock import MovableClock
from shared.contracts.vocabulary import NotificationStatus
from shared.events import EventType
from shared.messaging.consumer import EventConsumer
from shared.messaging.inproc import InProcessBus
from tests.factories import T0, oncall_body, refill_overdue
from tests.helpers import publish, start_service
from tests.helpers import test_settings as make_settings
from tests.integration.alerts.alerts_testkit import ONCALL

GROUP = 25  # sent pages per message in the last minute (a storm's grouped messages)


def run(due: int = 1400, sent: int = 250, passes: int = 30) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, database("claim_backlog") as url:
        settings = make_settings(Path(tmp), alerts_database_url=url)
        bus = InProcessBus()
        clock = MovableClock(T0)
        h = start_service("alerts", settings, clock=clock, bus=bus)
        rt = h.runtime
        try:
            r = h.client.put("/v1/oncall/north", headers=ONCALL,
                             json=oncall_body([("ann", "log", "ann")], [("bob", "log", "bob")]))
            assert r.status_code == 200, r.text
            bus.declare(rt.all_queues())
            (sub,) = [s for s in rt.subscriptions if EventType.REFILL_OVERDUE in s.handlers]
            consumer = EventConsumer(sub.queue.name, sub.queue, sub.handlers, rt.uow_factory,
                                     max_attempts=3, batch_handlers=sub.batch_handlers,
                                     prepare=sub.prepare)
            for i in range(due + sent):
                publish(bus, EventType.REFILL_OVERDUE,
                        refill_overdue(f"appt-{i}", f"SN{i:05}", mrn=f"MRN-{i}", center="north",
                                       hours_to_empty=60.0), time=clock.now())
            while (batch := bus.take(sub.queue.name, limit=20)):
                outcomes = consumer.process(batch)
                assert all(o.action == "ack" for o in outcomes), outcomes
            clock.advance(timedelta(seconds=5))
            with rt.uow_factory() as uow:
                ids = list(uow.session.scalars(
                    Notification.__table__.select().with_only_columns(Notification.id)
                    .where(Notification.level == 1).order_by(Notification.id).limit(sent)))
                for k in range(0, len(ids), GROUP):
                    message = ids[k:k + GROUP]
                    uow.session.execute(
                        update(Notification).where(Notification.id.in_(message))
                        .values(status=NotificationStatus.SENT, sent_at=clock.now() - timedelta(seconds=30),
                                message_id=message[0])
                        .execution_options(synchronize_session=False))
                uow.commit()
            statements: list[str] = []
            sa_event.listen(rt.engine, "before_cursor_execute",
                            lambda _c, _cur, statement, *_: statements.append(statement))
            walls, cpus, claimed = [], [], []
            for _ in range(passes):
                statements.clear()
                started, cpu = time.perf_counter(), time.process_time()
                with rt.uow_factory() as uow:
                    claims = paging.claim_in(uow, settings=rt.settings)
                    uow.rollback()
                walls.append((time.perf_counter() - started) * 1000)
                cpus.append((time.process_time() - cpu) * 1000)
                claimed.append(sum(max(1, len(c.notification_ids)) for c in claims))
        finally:
            rt.engine.dispose()
    return {"due": due, "sent_last_minute": sent, "passes": passes,
            "pages_claimed_per_pass": statistics.median(claimed),
            "pass_wall_ms_p50": round(statistics.median(walls), 1),
            "pass_wall_ms_max": round(max(walls), 1),
            "pass_cpu_ms_p50_this_process": round(statistics.median(cpus), 1),
            "statements_per_pass": len(statements)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.claim_backlog")
    parser.add_argument("--due", type=int, default=1400)
    parser.add_argument("--sent", type=int, default=250)
    parser.add_argument("--passes", type=int, default=30)
    args = parser.parse_args()
    print(json.dumps(run(args.due, args.sent, args.passes), indent=2))


if __name__ == "__main__":
    main()
