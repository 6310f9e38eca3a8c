"""Outbox, relay and consumer semantics on SQLite and the in-process bus."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import func, select

from shared.events import CloudEvent
from shared.messaging.base import HEADER_DLQ_REASON, QueueSpec
from shared.messaging.consumer import EventConsumer
from shared.messaging.inproc import InProcessBus, topic_matches
from shared.messaging.relay import OutboxRelay
from tests.helpers import wait_until
from tests.unit.platform.toyservice import Seen, on_widget, toy_runtime

QUEUE = QueueSpec("toy.widgets", (("hai.events", "toy.widget.*"),))


@pytest.mark.parametrize("pattern,key,ok", [
    ("hai.scheduling.#", "hai.scheduling.refill.overdue", True),
    ("hai.scheduling.#", "hai.scheduling", True),
    ("hai.*.pump.implanted", "hai.inventory.pump.implanted", True),
    ("hai.*.pump", "hai.inventory.pump.implanted", False),
    ("#", "anything.at.all", True),
    ("a.b", "a.c", False),
])
def test_topic_matching(pattern, key, ok):
    assert topic_matches(pattern, key) is ok


def _setup(tmp_path):
    bus = InProcessBus()
    rt = toy_runtime(tmp_path, bus=bus)
    bus.declare([QUEUE])
    consumer = EventConsumer("toy", QUEUE, {"toy.widget.created": on_widget}, rt.uow_factory,
                             max_attempts=3)
    relay = OutboxRelay(rt.uow_factory, lambda: bus)
    return bus, rt, consumer, relay


def _publish(rt, name="w", rollback=False):
    with rt.uow_factory() as uow:
        event = uow.publish_raw("toy.widget.created", {"id": 1, "name": name, "volume_ml": 1})
        if rollback:
            uow.rollback()
        else:
            uow.commit()
    return event


def _seen(rt):
    with rt.uow_factory() as uow:
        return uow.session.scalar(select(func.count()).select_from(Seen))


def test_rolled_back_event_is_never_published_committed_one_is(tmp_path):
    bus, rt, consumer, relay = _setup(tmp_path)
    _publish(rt, rollback=True)
    assert relay.run_once() == 0
    event = _publish(rt)
    assert rt.uow_factory.outbox_signal.is_set()  # the commit woke the relay
    assert relay.run_once() == 1
    assert [m.message_id for m in bus.published] == [event.id]
    assert relay.run_once() == 0


def test_redelivered_event_is_handled_once(tmp_path):
    bus, rt, consumer, relay = _setup(tmp_path)
    _publish(rt)

    class DiesBeforeMarking(OutboxRelay):
        def mark_published(self, uow, seqs):
            raise RuntimeError("relay killed between publish and mark")

    with pytest.raises(RuntimeError):
        DiesBeforeMarking(rt.uow_factory, lambda: bus).run_once()
    assert relay.run_once() == 1  # published again: at-least-once
    batch = bus.take(QUEUE.name)
    assert len(batch) == 2
    assert [o.action for o in consumer.process(batch)] == ["ack", "ack"]
    assert _seen(rt) == 1


def test_failing_handler_is_retried_then_dead_lettered_and_others_flow(tmp_path):
    bus, rt, consumer, relay = _setup(tmp_path)
    _publish(rt, name="poison")
    _publish(rt, name="fine")
    relay.run_once()
    stop = threading.Event()
    thread = threading.Thread(target=bus.consume, args=(QUEUE, consumer.process),
                              kwargs={"prefetch": 10, "stop": stop, "retry_delay_ms": 50})
    thread.start()
    try:
        wait_until(lambda: bus.dead_letters[QUEUE.name], what="the poison message's dead letter")
    finally:
        stop.set()
    thread.join()
    (dead,) = bus.dead_letters[QUEUE.name]
    assert "failed 3 times" in dead.headers[HEADER_DLQ_REASON]
    assert "handler failure" in dead.headers[HEADER_DLQ_REASON]
    assert _seen(rt) == 1


@pytest.mark.parametrize("body,reason", [
    (b"\xff\xfe not utf8", "not JSON"),
    (b"{broken", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"id": "x", "type": "toy.widget.created"}).encode(), "not a CloudEvents"),
    (CloudEvent.create(source="/t", type="toy.unknown", data={}).to_json_bytes(),
     "unknown event type"),
    (CloudEvent.create(source="/t", type="toy.widget.created", data={"id": "NaN?"}).to_json_bytes(),
     "invalid data"),
    (CloudEvent.create(source="/t", type="toy.widget.created", data=[1]).to_json_bytes(),
     "not a JSON object"),
    (CloudEvent.create(source="/t", type="toy.widget.created",
                       data={"id": 2, "name": "impossible", "volume_ml": 1}).to_json_bytes(),
     "impossible widget"),
])
def test_malformed_messages_are_dead_lettered_with_reason(tmp_path, body, reason):
    from shared.messaging.base import Delivery

    bus, rt, consumer, relay = _setup(tmp_path)
    good = CloudEvent.create(source="/t", type="toy.widget.created",
                             data={"id": 1, "name": "ok", "volume_ml": 1})
    outcomes = consumer.process([
        Delivery(body=body, routing_key="toy.widget.created", exchange="hai.events"),
        Delivery(body=good.to_json_bytes(), routing_key="toy.widget.created", exchange="hai.events"),
    ])
    assert outcomes[0].action == "dead_letter" and reason in (outcomes[0].reason or "")
    assert outcomes[1].action == "ack"
    assert _seen(rt) == 1


def test_batch_is_one_transaction_and_duplicates_inside_it_count_once(tmp_path):
    from shared.messaging.base import Delivery

    bus, rt, consumer, relay = _setup(tmp_path)
    ev = CloudEvent.create(source="/t", type="toy.widget.created",
                           data={"id": 1, "name": "ok", "volume_ml": 1})
    d = Delivery(body=ev.to_json_bytes(), routing_key=ev.type, exchange="hai.events")
    assert [o.action for o in consumer.process([d, d, d])] == ["ack"] * 3
    assert _seen(rt) == 1


def test_a_subscription_s_batch_bounds_the_events_of_one_transaction(tmp_path):
    """A queue whose handlers page (alerts) takes small batches: 7 waiting events with a batch
    of 3 are handled in three transactions (3, 3, 1), not in one of the service's prefetch."""
    from sqlalchemy import event as sa_event

    from shared.runtime import Subscription, Worker

    bus, rt, _, relay = _setup(tmp_path)
    rt.subscriptions.append(Subscription(queue=QUEUE, handlers={"toy.widget.created": on_widget},
                                         batch=3))
    for n in range(7):
        _publish(rt, name=f"w{n}")
    while relay.run_once():
        pass
    commits: list[int] = []
    sa_event.listen(rt.engine, "commit", lambda _conn: commits.append(1))
    worker = Worker(rt, relay=False, jobs=False)
    try:
        worker.start()
        wait_until(lambda: _seen(rt) == 7, what="the 7 events handled")
    finally:
        worker.stop()
    assert len(commits) == 3, commits


def test_a_worker_on_sqlite_wakes_its_relay_in_process_and_listens_for_nothing(tmp_path):
    """One process on SQLite: the commit wakes the relay directly; no PostgreSQL listener."""
    from shared.runtime import Worker

    bus, rt, _, _ = _setup(tmp_path)
    worker = Worker(rt, consumers=False, jobs=False)
    try:
        worker.start()
        assert [t.name for t in worker.threads] == ["toy-relay"]
        _publish(rt)
        wait_until(lambda: bus.depth(QUEUE.name) == 1, what="the event relayed")
    finally:
        worker.stop()
