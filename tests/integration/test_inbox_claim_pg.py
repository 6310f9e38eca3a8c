"""The inbox claim on PostgreSQL, raced for real: two consumers of one queue given the same event
at the same moment (two threads, two connections). The second waits for the first's transaction
and then finds the event handled: the handler runs once, both acknowledge, and the second needs
no second attempt. And a failing statement's reason keeps PostgreSQL's DETAIL (the clashing
values) and the SQL out."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select, text

from shared.db import make_engine
from shared.events import CloudEvent
from shared.messaging.base import HEADER_ATTEMPTS, Delivery, Outcome, QueueSpec
from shared.messaging.consumer import EventConsumer
from tests.helpers import wait_until
from tests.unit.platform.toyservice import Seen, toy_runtime

QUEUE = QueueSpec("toy.widgets", (("hai.events", "toy.widget.*"),))
SECRET = "MRN-0071-SECRET"
TAGS = Table("tags", MetaData(), Column("id", Integer, primary_key=True, autoincrement=True),
             Column("label", String(64), unique=True))


class CountingFactory:
    """The runtime's unit-of-work factory, counting the transactions a consumer opens."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.platform = inner.platform
        self.opened = 0

    def __call__(self) -> Any:
        self.opened += 1
        return self.inner()


def _delivery(event: CloudEvent, attempts: int = 0) -> Delivery:
    return Delivery(body=event.to_json_bytes(), routing_key=event.type, exchange="hai.events",
                    message_id=event.id, headers={HEADER_ATTEMPTS: attempts} if attempts else {})


def _lock_waiters(engine: Any, database: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND wait_event_type = 'Lock'"
        ), {"db": database}).scalar_one())


def test_two_consumers_given_one_event_at_once_handle_it_once(pg_database, tmp_path):
    engine = make_engine(pg_database("inbox_race"))
    try:
        rt = toy_runtime(tmp_path, engine=engine)
        inside, release = threading.Event(), threading.Event()
        calls: list[str] = []

        def handler(uow: Any, event: CloudEvent) -> None:
            calls.append(threading.current_thread().name)
            uow.session.add(Seen(event_id=event.id))
            if len(calls) == 1:  # the first consumer holds its transaction open here
                inside.set()
                assert release.wait(30), "the test never released the first consumer"

        handlers = {"toy.widget.created": handler}
        first = EventConsumer("toy", QUEUE, handlers, rt.uow_factory)
        counting = CountingFactory(rt.uow_factory)
        second = EventConsumer("toy", QUEUE, handlers, counting)  # type: ignore[arg-type]
        event = CloudEvent.create(source="/t", type="toy.widget.created",
                                  data={"id": 1, "name": "w", "volume_ml": 1})
        outcomes: dict[str, list[Outcome]] = {}

        def run(name: str, consumer: EventConsumer) -> None:
            outcomes[name] = consumer.process([_delivery(event)])

        one = threading.Thread(target=run, args=("first", first), name="first")
        two = threading.Thread(target=run, args=("second", second), name="second")
        one.start()
        assert inside.wait(30), "the first consumer never reached its handler"
        two.start()
        database = engine.url.database
        wait_until(lambda: _lock_waiters(engine, database) >= 1,
                   what="the second consumer to wait on the first one's inbox row")
        release.set()
        one.join(30)
        two.join(30)
        assert not one.is_alive() and not two.is_alive()
        assert [(o.action, o.reason) for o in outcomes["first"]] == [("ack", None)]
        assert [(o.action, o.reason) for o in outcomes["second"]] == [("ack", None)]
        assert calls == ["first"], "the handler ran again for an event already claimed"
        assert counting.opened == 1, "the second consumer needed a second attempt (a failed claim)"
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(Seen)).scalar_one() == 1
    finally:
        engine.dispose()


def test_failure_reasons_on_postgresql_carry_no_sql_and_no_values(pg_database, tmp_path):
    engine = make_engine(pg_database("inbox_reason"), hide_parameters=False)
    try:
        rt = toy_runtime(tmp_path, engine=engine)
        TAGS.create(engine)

        def tag(uow: Any, event: CloudEvent) -> None:
            uow.session.execute(insert(TAGS).values(label=event.data["label"]))

        consumer = EventConsumer("toy", QUEUE, {"toy.tag": tag}, rt.uow_factory, max_attempts=2)
        first = CloudEvent.create(source="/t", type="toy.tag", data={"label": SECRET})
        clash = CloudEvent.create(source="/t", type="toy.tag", data={"label": SECRET})
        assert [o.action for o in consumer.process([_delivery(first)])] == ["ack"]
        outcomes = consumer.process([_delivery(clash)]) + consumer.process([_delivery(clash, 1)])
        assert [o.action for o in outcomes] == ["retry", "dead_letter"]
        for outcome in outcomes:
            reason = outcome.reason or ""
            assert "UniqueViolation (SQLSTATE 23505)" in reason, reason  # the kind, not the text
            for leaked in (SECRET, "INSERT", "[SQL", "parameters", "DETAIL"):
                assert leaked not in reason, reason
    finally:
        engine.dispose()
