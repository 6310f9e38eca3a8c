"""An abnormal flow's reading is not held behind a bulk batch: on PostgreSQL and RabbitMQ a worker
relays the contract's urgent events by a relay of their own, on a broker connection of its own
(shared.runtime.Worker.urgent_lane). Here the broker's confirms of the bulk batch are late until
the test lets them come (a gate in the publisher), as a broker busy with a sweep's thousands is:
the reading's event still arrives at once, and once the gate opens every event arrives once."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pika
import pytest
from sqlalchemy import func, select

from shared.clock import SystemClock
from shared.contracts.registry import urgent_types
from shared.db import Wakeup, make_engine
from shared.events import EVENTS_EXCHANGE
from shared.messaging.base import OutgoingMessage, Publisher, QueueSpec
from shared.messaging.rabbit import RabbitBus
from shared.messaging.relay import OutboxRelay
from shared.runtime import ServiceRuntime, Worker, build_runtime
from shared.settings import Settings
from tests.helpers import wait_until
from tests.unit.platform.toyservice import metadata, platform

URGENT = [t.value for t in urgent_types("scheduling")]
BULK = "hai.scheduling.refill.overdue"
WATCH = QueueSpec("test.lane.watch", ((EVENTS_EXCHANGE, "hai.#"),))


class _GatedPublisher:
    """A publisher whose batches holding any event but an urgent one are confirmed only once
    the gate is open (the broker late with a bulk batch's confirms)."""

    def __init__(self, inner: Publisher, gate: threading.Event, held: threading.Event) -> None:
        self.inner, self.gate, self.held = inner, gate, held

    def _hold(self, messages: Sequence[OutgoingMessage]) -> None:
        if any(m.routing_key not in URGENT for m in messages):
            self.held.set()
            assert self.gate.wait(60), "the test never opened the gate"

    def publish_batch(self, messages: Sequence[OutgoingMessage], timeout: float = 30.0) -> None:
        self.inner.publish_batch(messages, timeout)
        self._hold(messages)

    def publish_batch_async(self, messages: Sequence[OutgoingMessage],
                            timeout: float = 30.0) -> Callable[[], None]:
        wait = self.inner.publish_batch_async(messages, timeout)

        def gated() -> None:
            wait()
            self._hold(messages)

        return gated

    def close(self) -> None:
        self.inner.close()


class _GatedBus(RabbitBus):
    def __init__(self, url: str) -> None:
        super().__init__(url, heartbeat_seconds=10)
        self.gate, self.held = threading.Event(), threading.Event()

    def publisher(self) -> Any:
        return _GatedPublisher(super().publisher(), self.gate, self.held)


@pytest.fixture
def scheduling_worker(fresh_vhost: str, pg_database: Callable[[str], str]
                      ) -> Iterator[tuple[ServiceRuntime, _GatedBus]]:
    """Scheduling's relays as `hai worker scheduling` runs them (the toy service's tables; only
    the name matters: it gives the urgent events), on PostgreSQL and a vhost of their own."""
    engine = make_engine(pg_database("urgent_lane"))
    metadata.create_all(engine)
    bus = _GatedBus(fresh_vhost)
    bus.declare([WATCH])
    rt = build_runtime(name="scheduling", settings=Settings(env="test", outbox_poll_seconds=0.2),
                       metadata=metadata, platform=platform, clock=SystemClock(), bus=bus,
                       engine=engine)
    try:
        yield rt, bus
    finally:
        bus.gate.set()
        bus.close()
        engine.dispose()


def _received(amqp_url: str) -> Counter[str]:
    """The message ids the watching queue holds now (taken off it)."""
    got: Counter[str] = Counter()
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = conn.channel()
        while True:
            method, props, _body = channel.basic_get(WATCH.name, auto_ack=True)
            if method is None:
                return got
            got[props.message_id] += 1
    finally:
        conn.close()


def test_a_reading_is_relayed_while_a_bulk_batch_waits_for_its_confirms(
        scheduling_worker: tuple[ServiceRuntime, _GatedBus], fresh_vhost: str) -> None:
    rt, bus = scheduling_worker
    with rt.uow_factory.begin() as uow:  # a sweep's facts, committed before the reading
        bulk = [uow.publish_raw(BULK, {"i": i}).id for i in range(300)]
    worker = Worker(rt, consumers=False, jobs=False)
    worker.start()
    try:
        assert "scheduling-relay-urgent" in [t.name for t in worker.threads]
        # the relay of the rest batches a moment's commits; the urgent lane never waits
        assert [(r.only, r.linger_seconds) for r in worker.relays] == [
            (None, rt.settings.outbox_linger_seconds), (sorted(URGENT), 0.0)]
        assert rt.settings.outbox_linger_seconds > 0
        wait_until(bus.held.is_set, what="the bulk batch sent, its confirms held")
        with rt.uow_factory.begin() as uow:
            reading = uow.publish_raw(URGENT[0], {"pump_serial": "SN-1"}).id
        received: Counter[str] = Counter()

        def arrived(ids: Sequence[str]) -> bool:
            received.update(_received(fresh_vhost))
            return all(i in received for i in ids)

        wait_until(lambda: arrived([reading]), what="the reading's event, past the held batch",
                   timeout_s=10)
        outbox = platform.outbox
        with rt.engine.connect() as conn:  # the bulk batch is still unsettled: its rows unsent
            unsent = set(conn.execute(select(outbox.c.event_id)
                                      .where(outbox.c.published_at.is_(None))).scalars())
        assert unsent == set(bulk)
        bus.gate.set()
        wait_until(lambda: arrived(bulk), what="every bulk event", timeout_s=30)
        with rt.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(outbox)
                                .where(outbox.c.published_at.is_(None))).scalar_one() == 0
        received.update(_received(fresh_vhost))
        assert received == Counter(dict.fromkeys([*bulk, reading], 1))  # each once
    finally:
        worker.stop()


def test_the_lane_takes_the_urgent_events_only_and_the_other_relay_never_takes_them(
        scheduling_worker: tuple[ServiceRuntime, _GatedBus]) -> None:
    rt, bus = scheduling_worker
    with rt.uow_factory.begin() as uow:
        ids = {key: [uow.publish_raw(key, {"i": i}).id for i in range(3)] for key in (BULK, *URGENT)}

    def claimed(**lanes: Any) -> set[str]:
        relay = OutboxRelay(rt.uow_factory, bus.publisher, **lanes)
        with rt.uow_factory() as uow:
            _seqs, messages = relay._claim(uow)
        return {m.message_id for m in messages}

    assert claimed(only=URGENT) == {i for key in URGENT for i in ids[key]}
    assert claimed(skip=URGENT) == set(ids[BULK])
    assert claimed() == {i for key_ids in ids.values() for i in key_ids}


def test_a_wakeup_sets_each_follower_and_one_clear_swallows_no_other_s() -> None:
    wakeup = Wakeup()
    a, b = wakeup.follower(), wakeup.follower()
    assert not (wakeup.is_set() or a.is_set() or b.is_set())
    wakeup.set()
    assert wakeup.is_set() and a.is_set() and b.is_set()
    a.clear()  # one relay took its wake-up: the other's stays
    assert b.is_set() and wakeup.is_set() and not a.is_set()
