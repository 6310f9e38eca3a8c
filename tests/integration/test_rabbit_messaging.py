"""The RabbitMQ transport end to end: outbox → relay → RabbitBus → EventConsumer → PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pika
import pytest
from pydantic import BaseModel
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select

from shared.clock import SystemClock
from shared.db import (
    NAMING_CONVENTION,
    UnitOfWork,
    UnitOfWorkFactory,
    define_platform_tables,
    make_engine,
)
from shared.events import EVENTS_EXCHANGE, CloudEvent
from shared.messaging.base import (
    HEADER_ATTEMPTS,
    HEADER_DLQ_REASON,
    HEADER_ORIGINAL_EXCHANGE,
    HEADER_ORIGINAL_QUEUE,
    HEADER_ORIGINAL_ROUTING_KEY,
    Delivery,
    Outcome,
    OutgoingMessage,
    PublishError,
    QueueSpec,
)
from shared.messaging.consumer import EventConsumer, PermanentError, data_of
from shared.messaging.rabbit import BrokerUnavailable, DeadLetters, RabbitBus
from shared.messaging.relay import OutboxRelay
from tests import services as svc
from tests.helpers import wait_until
from tests.private_services import private_rabbitmq

THING_HAPPENED = "hai.test.thing.happened"
THING_CHECKED = "hai.test.thing.checked"  # data validated by a pydantic model
THING_REJECTED = "hai.test.thing.rejected"  # the handler raises PermanentError
THING_FAILING = "hai.test.thing.failing"  # the handler raises while `failing` is set
RETRY_DELAY_MS = 200


class ThingData(BaseModel):
    count: int


class Recorder:
    """Wraps EventConsumer.process to see what each consumer thread received and decided."""

    def __init__(self, consumer: EventConsumer) -> None:
        self.consumer = consumer
        self.deliveries: list[Delivery] = []
        self.outcomes: list[tuple[str | None, Outcome]] = []

    def process(self, batch: Any) -> list[Outcome]:
        self.deliveries.extend(batch)
        outcomes = self.consumer.process(batch)
        self.outcomes.extend(zip((d.message_id for d in batch), outcomes, strict=True))
        return outcomes

    def deliveries_of(self, message_id: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.message_id == message_id]

    def acked(self, message_id: str) -> int:
        return sum(1 for mid, o in self.outcomes if mid == message_id and o.action == "ack")


class World:
    """A database with the platform tables, a vhost with one queue, and the threads running."""

    def __init__(self, amqp_url: str, db_url: str) -> None:
        self.vhost = unquote(urlparse(amqp_url).path.lstrip("/"))
        metadata = MetaData(naming_convention=NAMING_CONVENTION)
        self.platform = define_platform_tables(metadata)
        self.effects = Table(
            "effects", metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("event_id", String(64), nullable=False),  # not unique: duplicates must show
        )
        self.engine = make_engine(db_url)
        metadata.create_all(self.engine)
        self.uow = UnitOfWorkFactory(self.engine, self.platform, SystemClock(), "test")
        self.bus = RabbitBus(amqp_url, heartbeat_seconds=10, retry_delay_ms=RETRY_DELAY_MS)
        self.dlq = DeadLetters(self.bus.connect)
        self.queue = QueueSpec("test.things", ((EVENTS_EXCHANGE, "hai.test.#"),))
        self.bus.declare([self.queue])
        self.failing = True
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    # -- handlers ----------------------------------------------------------------------

    def _record(self, uow: UnitOfWork, event: CloudEvent) -> None:
        uow.session.execute(insert(self.effects).values(event_id=event.id))

    def _checked(self, uow: UnitOfWork, event: CloudEvent) -> None:
        ThingData.model_validate(data_of(event))
        self._record(uow, event)

    def _rejected(self, uow: UnitOfWork, event: CloudEvent) -> None:
        raise PermanentError(f"no thing {event.subject!r}")

    def _failing(self, uow: UnitOfWork, event: CloudEvent) -> None:
        if self.failing:
            raise RuntimeError("handler exploded")
        self._record(uow, event)

    def consumer(self, *, max_attempts: int = 5) -> EventConsumer:
        handlers = {THING_HAPPENED: self._record, THING_CHECKED: self._checked,
                    THING_REJECTED: self._rejected, THING_FAILING: self._failing}
        return EventConsumer("things", self.queue, handlers, self.uow, max_attempts=max_attempts)

    # -- threads -----------------------------------------------------------------------

    def _spawn(self, target: Callable[[], None], name: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)
        return thread

    def start_consumer(self, *, max_attempts: int = 5, prefetch: int = 200) -> Recorder:
        recorder = Recorder(self.consumer(max_attempts=max_attempts))
        self._spawn(lambda: self.bus.consume(self.queue, recorder.process, prefetch=prefetch,
                                             stop=self.stop, retry_delay_ms=RETRY_DELAY_MS),
                    "test-consumer")
        return recorder

    def relay(self, cls: type[OutboxRelay] = OutboxRelay, batch_size: int = 250) -> OutboxRelay:
        return cls(self.uow, self.bus.publisher, batch_size=batch_size, poll_seconds=0.1)

    def start_relay(self, batch_size: int = 250) -> OutboxRelay:
        relay = self.relay(batch_size=batch_size)
        self._spawn(lambda: relay.run(self.stop), "test-relay")
        return relay

    def shutdown(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)
        alive = [t.name for t in self.threads if t.is_alive()]
        self.bus.close()
        self.engine.dispose()
        assert not alive, f"threads still running after stop: {alive}"

    # -- data ----------------------------------------------------------------------------

    def commit_events(self, count: int, event_type: str = THING_HAPPENED,
                      data: Any = None, chunk: int = 500) -> list[str]:
        ids: list[str] = []
        for start in range(0, count, chunk):
            with self.uow.begin() as uow:
                for i in range(start, min(start + chunk, count)):
                    ids.append(uow.publish_raw(event_type, data if data is not None else {"i": i}).id)
        return ids

    def effect_counts(self) -> Counter[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(self.effects.c.event_id, func.count())
                                .group_by(self.effects.c.event_id))
            return Counter({r[0]: r[1] for r in rows})

    def effects_total(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(self.effects)).scalar_one())

    def handled_at_least(self, count: int) -> bool:
        return self.effects_total() >= count

    def unpublished(self) -> int:
        outbox = self.platform.outbox
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(outbox)
                                    .where(outbox.c.published_at.is_(None))).scalar_one())

    def outbox_ids(self) -> set[str]:
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(select(self.platform.outbox.c.event_id))}

    def dead_letters(self) -> dict[str | None, Delivery]:
        return {d.message_id: d for d in self.dlq.peek(self.queue.name, 100)}

    def close_connections(self) -> None:
        result = svc.rabbitmqctl("close_all_connections", "-p", self.vhost, "test: cut")
        assert result.returncode == 0, result.stderr


@pytest.fixture
def world(fresh_vhost: str, pg_database: Callable[[str], str]) -> Iterator[World]:
    w = World(fresh_vhost, pg_database("rabbit"))
    yield w
    w.shutdown()


def test_rolled_back_event_never_leaves_and_committed_one_is_handled_once(world: World) -> None:
    class DiesAfterPublishing(OutboxRelay):
        died = False

        def mark_published(self, uow: Any, seqs: list[int]) -> None:
            if not self.died:
                self.died = True
                raise RuntimeError("relay killed between publishing and marking sent")
            super().mark_published(uow, seqs)

    with world.uow() as uow:
        rolled_back = uow.publish_raw(THING_HAPPENED, {"i": -1})
        uow.rollback()
    with world.uow.begin() as uow:
        committed = uow.publish_raw(THING_HAPPENED, {"i": 1})
    assert world.outbox_ids() == {committed.id}

    recorder = world.start_consumer()
    relay = world.relay(DiesAfterPublishing)
    with pytest.raises(RuntimeError, match="relay killed"):
        relay.run_once()
    assert world.unpublished() == 1  # published, but the mark was rolled back
    wait_until(lambda: recorder.acked(committed.id) == 1, what="the first copy handled", timeout_s=20)

    assert relay.run_once() == 1  # the relay runs again and publishes the same event again
    assert world.unpublished() == 0
    wait_until(lambda: recorder.acked(committed.id) == 2, what="the duplicate acked", timeout_s=20)
    assert world.effect_counts() == Counter({committed.id: 1})
    assert {d.message_id for d in recorder.deliveries} == {committed.id}
    assert rolled_back.id not in {d.message_id for d in recorder.deliveries}
    delivery = recorder.deliveries[0]
    assert delivery.routing_key == THING_HAPPENED
    assert delivery.exchange == EVENTS_EXCHANGE
    assert json.loads(delivery.body)["id"] == committed.id


def test_failing_handler_is_retried_a_bounded_number_of_times_then_dead_lettered(
    world: World,
) -> None:
    max_attempts = 3
    recorder = world.start_consumer(max_attempts=max_attempts)
    world.start_relay()
    [bad] = world.commit_events(1, THING_FAILING)
    good = world.commit_events(30)

    wait_until(lambda: set(world.effect_counts()) >= set(good), what="the good events handled", timeout_s=30)
    wait_until(lambda: bad in world.dead_letters(), what="the failing event in the DLQ", timeout_s=30)

    assert len(recorder.deliveries_of(bad)) == max_attempts
    assert [d.attempts for d in recorder.deliveries_of(bad)] == list(range(max_attempts))
    letter = world.dead_letters()[bad]
    assert f"failed {max_attempts} times" in letter.headers[HEADER_DLQ_REASON]
    assert "handler exploded" in letter.headers[HEADER_DLQ_REASON]
    assert letter.headers[HEADER_ORIGINAL_QUEUE] == world.queue.name
    assert letter.headers[HEADER_ORIGINAL_ROUTING_KEY] == THING_FAILING
    assert letter.headers[HEADER_ORIGINAL_EXCHANGE] == EVENTS_EXCHANGE
    assert (letter.exchange, letter.routing_key) == (EVENTS_EXCHANGE, THING_FAILING)
    assert world.effect_counts() == Counter(dict.fromkeys(good, 1))
    assert list(world.dead_letters()) == [bad]  # peeking leaves it there

    # once the cause is fixed, `hai dlq replay` puts it back and it goes through
    world.failing = False
    assert world.dlq.replay(world.queue.name, message_id="no-such-id") == 0
    assert world.dlq.replay(world.queue.name, message_id=bad) == 1
    wait_until(lambda: world.effect_counts()[bad] == 1, what="the replayed event handled", timeout_s=20)
    assert recorder.deliveries_of(bad)[-1].attempts == 0
    assert recorder.deliveries_of(bad)[-1].routing_key == THING_FAILING
    wait_until(lambda: not world.dead_letters(), what="an empty DLQ", timeout_s=10)


def test_publishing_and_consuming_resume_after_the_connections_are_cut(world: World) -> None:
    n_per_round, rounds = 1000, 3
    world.start_consumer(prefetch=200)
    world.start_relay(batch_size=250)
    ids: list[str] = []
    for round_no in range(rounds):
        ids += world.commit_events(n_per_round)
        target = len(ids) - n_per_round // 2
        wait_until(partial(world.handled_at_least, target), what=f"round {round_no} under way", timeout_s=30)
        world.close_connections()

    wait_until(lambda: world.effects_total() >= len(ids), what=f"all {len(ids)} handled", timeout_s=45)
    counts = world.effect_counts()
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1
    assert world.unpublished() == 0

    # a publisher kept across the cut reconnects by itself on the next call
    publisher = world.bus.publisher()
    message = OutgoingMessage(message_id="direct", exchange=EVENTS_EXCHANGE,
                              routing_key="hai.other.x", body=b"{}")
    publisher.publish_batch([message])
    world.close_connections()
    failures = 0

    def published() -> bool:
        nonlocal failures
        try:
            publisher.publish_batch([message], timeout=5)
        except PublishError:
            failures += 1
            return False
        return True

    wait_until(published, what="the publisher to reconnect", timeout_s=10)
    assert failures <= 1
    publisher.close()


def test_two_consumers_on_one_queue_handle_each_event_once(world: World) -> None:
    ids = world.commit_events(2000)
    first = world.start_consumer(prefetch=50)
    second = world.start_consumer(prefetch=50)
    world.start_relay()

    wait_until(lambda: world.effects_total() >= len(ids), what="all events handled", timeout_s=45)
    counts = world.effect_counts()
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1
    assert first.deliveries and second.deliveries, "both consumers took part"


def test_the_relay_keeps_the_outbox_order_with_batches_in_flight(world: World) -> None:
    # 1,000 events in batches of 50: the relay sends each batch before it waits for the
    # confirms of the one before; the queue must still hold them in the order committed
    ids = world.commit_events(1000)
    relay = world.start_relay(batch_size=50)
    wait_until(lambda: world.unpublished() == 0, what="every outbox row marked sent", timeout_s=30)
    assert relay.last_run_at is not None
    recorder = world.start_consumer(prefetch=100)
    wait_until(lambda: world.effects_total() >= len(ids), what="all events handled", timeout_s=30)
    received = [d.message_id or "" for d in recorder.deliveries]
    assert received == ids
    assert max(world.effect_counts().values()) == 1


def test_the_same_events_handled_at_once_by_two_consumers_count_once(world: World) -> None:
    # two transactions claim the same 200 inbox rows at the same moment: the second waits for
    # the first and, once it commits, finds them taken: no duplicate, no error, no retry
    events = [CloudEvent.create(source="/hai/test", type=THING_HAPPENED, data={"i": i})
              for i in range(200)]
    batch = [Delivery(body=e.to_json_bytes(), routing_key=THING_HAPPENED,
                      exchange=EVENTS_EXCHANGE, message_id=e.id, tag=i + 1)
             for i, e in enumerate(events)]
    inside, release = threading.Event(), threading.Event()

    def held_open(uow: UnitOfWork, event: CloudEvent) -> None:
        world._record(uow, event)
        if event.id == events[-1].id:
            inside.set()
            release.wait(10)  # the first transaction stays open, its inbox rows written

    first = EventConsumer("things", world.queue, {THING_HAPPENED: held_open}, world.uow)
    second = EventConsumer("things", world.queue, {THING_HAPPENED: world._record}, world.uow)
    outcomes: dict[str, list[Outcome]] = {}
    threads = [threading.Thread(target=lambda: outcomes.update(first=first.process(batch)))]
    threads[0].start()
    assert inside.wait(10)
    threads.append(threading.Thread(target=lambda: outcomes.update(second=second.process(batch))))
    threads[1].start()
    threads[1].join(1.0)
    assert threads[1].is_alive(), "the second consumer must wait for the first's inbox rows"
    release.set()
    for thread in threads:
        thread.join(20)
    assert set(outcomes) == {"first", "second"}
    assert all(o.action == "ack" for result in outcomes.values() for o in result)
    counts = world.effect_counts()
    assert set(counts) == {e.id for e in events}
    assert max(counts.values()) == 1


def _raw(message_id: str, body: bytes, routing_key: str = "hai.test.raw") -> OutgoingMessage:
    return OutgoingMessage(message_id=message_id, exchange=EVENTS_EXCHANGE,
                           routing_key=routing_key, body=body)


def _event(message_id: str, **fields: Any) -> bytes:
    event = {"specversion": "1.0", "id": message_id, "source": "/hai/test",
             "type": THING_HAPPENED, "data": {}}
    event.update(fields)
    return json.dumps({k: v for k, v in event.items() if v is not None}).encode()


def test_malformed_messages_are_dead_lettered_with_a_reason_and_the_rest_flows(
    world: World,
) -> None:
    recorder = world.start_consumer()
    expected = {
        "not-json": (b"this is { not json", "not JSON"),
        "not-utf8": (b"\xff\xfe\x00garbage", "not JSON"),
        "json-array": (b"[1, 2, 3]", "not a JSON object"),
        "json-string": (b'"just a string"', "not a JSON object"),
        "json-null": (b"null", "not a JSON object"),
        "no-specversion": (_event("no-specversion", specversion=None), "not a CloudEvents"),
        "old-specversion": (_event("old-specversion", specversion="0.3"), "not a CloudEvents"),
        "no-id": (_event("no-id", id=None), "not a CloudEvents"),
        "no-type": (_event("no-type", type=None), "not a CloudEvents"),
        "unknown-type": (_event("unknown-type", type="hai.test.thing.unheard_of"),
                         "unknown event type"),
        "bad-data": (_event("bad-data", type=THING_CHECKED, data={"count": "many"}),
                     f"invalid data for {THING_CHECKED}"),
        "data-not-object": (_event("data-not-object", type=THING_CHECKED, data=[1]),
                            "rejected:"),
        "rejected": (_event("rejected", type=THING_REJECTED, subject="X-1"), "rejected:"),
    }
    messages: list[OutgoingMessage] = []
    good: list[str] = []
    for i, (message_id, (body, _)) in enumerate(expected.items()):
        messages.append(_raw(message_id, body))
        good_id = f"good-{i}"
        good.append(good_id)
        messages.append(_raw(good_id, _event(good_id, type=THING_CHECKED, data={"count": i}),
                             routing_key=THING_CHECKED))
    publisher = world.bus.publisher()
    publisher.publish_batch(messages)
    publisher.close()

    wait_until(lambda: len(world.dead_letters()) >= len(expected),
        what="every bad message in DLQ", timeout_s=30)
    wait_until(lambda: set(world.effect_counts()) >= set(good),
        what="the good messages handled", timeout_s=30)
    letters = world.dead_letters()
    assert set(letters) == set(expected)
    for message_id, (_, reason) in expected.items():
        assert reason in letters[message_id].headers[HEADER_DLQ_REASON], message_id
        assert letters[message_id].body == expected[message_id][0]
        assert letters[message_id].headers.get(HEADER_ATTEMPTS, 0) == 0  # never retried
        assert len(recorder.deliveries_of(message_id)) == 1

    # still alive: a message sent afterwards is handled too
    with world.uow.begin() as uow:
        late = uow.publish_raw(THING_HAPPENED, {"i": 99}).id
    world.start_relay()
    wait_until(lambda: world.effect_counts()[late] == 1, what="a later event handled", timeout_s=20)


def test_a_processor_that_raises_gets_its_batch_back_and_the_consumer_goes_on(
    world: World,
) -> None:
    consumer = world.consumer()
    calls = Counter[str]()

    def process(batch: Any) -> list[Outcome]:
        calls["process"] += 1
        if calls["process"] == 1:
            raise RuntimeError("bug in the processor")
        if calls["process"] == 2:
            return []  # a wrong number of outcomes is a bug too
        return consumer.process(batch)

    world._spawn(lambda: world.bus.consume(world.queue, process, prefetch=50, stop=world.stop,
                                           retry_delay_ms=RETRY_DELAY_MS), "test-consumer")
    ids = world.commit_events(20)
    world.start_relay()
    wait_until(partial(world.handled_at_least, len(ids)), what="the batch handled after all", timeout_s=30)
    assert world.effect_counts() == Counter(dict.fromkeys(ids, 1))
    assert not world.dead_letters()


def test_a_consumer_configured_with_another_retry_delay_still_retries_and_dead_letters(
    world: World,
) -> None:
    # the queues exist with a 200 ms retry queue; this bus would declare 60 s: a mismatch
    other = RabbitBus(world.bus.url, retry_delay_ms=60_000)
    recorder = Recorder(world.consumer(max_attempts=2))
    world._spawn(lambda: other.consume(world.queue, recorder.process, prefetch=10,
                                       stop=world.stop, retry_delay_ms=RETRY_DELAY_MS),
                 "test-consumer")
    [bad] = world.commit_events(1, THING_FAILING)
    world.start_relay()
    wait_until(lambda: bad in world.dead_letters(), what="the failing event in the DLQ", timeout_s=20)
    assert [d.attempts for d in recorder.deliveries_of(bad)] == [0, 1]
    other.close()


def test_a_message_an_external_consumer_rejects_lands_in_the_dlq(world: World) -> None:
    # e.g. the pharmacy system consuming `pharmacy.orders` nacks an order it cannot read
    orders = QueueSpec("test.orders", ((EVENTS_EXCHANGE, "hai.test.order.#"),))
    world.bus.declare([orders])
    publisher = world.bus.publisher()
    publisher.publish_batch([_raw("order-1", b"{}", routing_key="hai.test.order.requested")])
    publisher.close()
    with pika.BlockingConnection(pika.URLParameters(world.bus.url)) as conn:
        channel = conn.channel()
        method = wait_until(lambda: channel.basic_get(orders.name)[0],
                            what="the order in its queue", timeout_s=10)
        channel.basic_nack(method.delivery_tag, requeue=False)

    wait_until(lambda: len(world.dlq.peek(orders.name)) == 1, what="the order in the DLQ", timeout_s=10)
    [letter] = world.dlq.peek(orders.name)
    assert letter.message_id == "order-1"
    assert (letter.exchange, letter.routing_key) == (EVENTS_EXCHANGE, "hai.test.order.requested")
    assert world.dlq.replay(orders.name) == 1
    assert world.dlq.peek(orders.name) == []


def test_check_tells_whether_the_broker_answers(world: World) -> None:
    world.bus.check()
    with pytest.raises(BrokerUnavailable):
        RabbitBus(f"amqp://guest:guest@{svc.AMQP_HOST}:1/").check()


def test_stop_ends_the_consumer(world: World) -> None:
    stop = threading.Event()
    thread = threading.Thread(
        target=world.bus.consume, args=(world.queue, world.consumer().process),
        kwargs={"prefetch": 10, "stop": stop, "retry_delay_ms": RETRY_DELAY_MS}, daemon=True)
    thread.start()
    wait_until(lambda: _consumers(world) == 1, what="the consumer registered", timeout_s=10)
    stop.set()
    thread.join(timeout=30)  # a bound for a hung test, not a timing claim
    assert not thread.is_alive(), "the consumer did not stop"
    wait_until(lambda: _consumers(world) == 0, what="the consumer to leave the queue", timeout_s=10)


def _consumers(world: World) -> int:
    result = svc.rabbitmqctl("list_queues", "-p", world.vhost, "--no-table-headers", "--quiet",
                             "name", "consumers")
    for line in result.stdout.splitlines():
        name, _, count = line.partition("\t")
        if name == world.queue.name:
            return int(count)
    return 0


@pytest.fixture
def own_world(tmp_path: Path, pg_database: Callable[[str], str]) -> Iterator[tuple[World, Any]]:
    """A World on a RabbitMQ node of this test's own: stopping it disturbs nobody else."""
    with private_rabbitmq(tmp_path) as rabbit:
        w = World(rabbit.url, pg_database("rabbit_own"))
        try:
            yield w, rabbit
        finally:
            w.shutdown()


@pytest.mark.broker_stop
def test_publishing_and_consuming_resume_after_the_broker_restarts(own_world) -> None:
    world, rabbit = own_world
    world.start_consumer(prefetch=200)
    world.start_relay(batch_size=250)
    ids = world.commit_events(3000)
    wait_until(partial(world.handled_at_least, 300), what="the stream under way", timeout_s=30)

    rabbit.stop_app()  # this test's own node: nobody else's broker stops
    in_flight = len(ids) - world.effects_total()
    try:
        ids += world.commit_events(1500)  # written while the broker is down
    finally:
        rabbit.start_app()

    wait_until(partial(world.handled_at_least, len(ids)), what=f"all {len(ids)} handled", timeout_s=50)
    counts = world.effect_counts()
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1
    wait_until(lambda: world.unpublished() == 0, what="the outbox drained", timeout_s=10)
    print(f"{in_flight} of the first wave were not yet handled when the broker stopped")


def test_a_batch_leaves_in_a_few_writes_not_one_per_frame(world: World) -> None:
    # pika writes each frame on its own (three per message); the publisher's connection joins
    # the frames of one ioloop turn into one write, in their order
    publisher = world.bus.publisher()
    message = partial(OutgoingMessage, exchange=EVENTS_EXCHANGE, routing_key="test.coalesce",
                      body=b'{"i": 0}')
    publisher.publish_batch([message(message_id="warm-up")])  # opens the connection
    conn = publisher._link._conn  # type: ignore[union-attr]
    writes: list[int] = []
    emit = conn._adapter_emit_data
    conn._adapter_emit_data = lambda data: (writes.append(len(data)), emit(data))[1]
    frames_before = conn.frames_sent
    publisher.publish_batch([message(message_id=f"m{i}") for i in range(300)])
    assert conn.frames_sent - frames_before == 900
    assert 1 <= len(writes) <= 5, writes
    publisher.close()


def test_a_bulk_publish_is_streamed_in_order_and_only_if_the_transaction_commits(
        world: World) -> None:
    # publish_many streams its rows with COPY on PostgreSQL (rows of about 1 kB, as here); it
    # must keep the outbox contract: in the transaction, in order after and before single
    # publishes, each event delivered once with its body
    big = {"note": "x" * 900}
    with world.uow() as uow:
        uow.publish_many_raw([(THING_HAPPENED, {**big, "i": i}, None) for i in range(300)])
        uow.rollback()
    assert world.outbox_ids() == set()

    with world.uow.begin() as uow:
        first = uow.publish_raw(THING_HAPPENED, {"i": -1}).id
        uow.publish_many_raw([(THING_HAPPENED, {**big, "i": i}, f"s{i}") for i in range(300)])
        last = uow.publish_raw(THING_HAPPENED, {"i": 300}).id
    outbox = world.platform.outbox
    with world.engine.connect() as conn:
        rows = conn.execute(select(outbox.c.event_id, outbox.c.body, outbox.c.created_at,
                                   outbox.c.routing_key).order_by(outbox.c.seq)).all()
    assert [r.event_id for r in rows][0] == first and rows[-1].event_id == last
    bodies = [json.loads(r.body) for r in rows]
    assert [b["data"]["i"] for b in bodies] == list(range(-1, 301))
    assert [b.get("subject") for b in bodies[1:-1]] == [f"s{i}" for i in range(300)]
    assert {r.routing_key for r in rows} == {THING_HAPPENED}
    assert all(r.created_at.utcoffset() is not None for r in rows)

    recorder = world.start_consumer(prefetch=100)
    world.start_relay(batch_size=100)
    wait_until(lambda: world.effects_total() >= len(rows), what="all events handled", timeout_s=30)
    assert [d.message_id for d in recorder.deliveries] == [r.event_id for r in rows]
    assert max(world.effect_counts().values()) == 1
