"""How fast events go outbox → relay → RabbitMQ → consumer → commit, against the broker's own limit.

`python -m bench.pipeline [--events N]` measures, in one vhost and one database of its own:
(a) ours: N events already committed to the outbox, OutboxRelay + RabbitBus + EventConsumer,
    from relay start to the last consumer commit; the handler writes one row per event, either
    with a batch handler (the run of events a delivered batch holds written with one
    `bulk_insert`, a COPY) or with a plain handler (one INSERT, so one database round trip, per
    event);
(b) the broker's limit: raw pika, the same messages (the same topic exchange `hai.events`, routing
    key and properties: persistent, content type, `message_id`) to a quorum queue bound as ours,
    with pipelined confirms (a window of unconfirmed messages) and a prefetching consumer acking
    many at once; (b0) the same through the default exchange straight to the queue, with no
    `message_id`: a lighter path than the services take (routing through a topic exchange costs
    the broker a quarter of its rate here), printed for reference;
(c) naive publishing that waits for each confirm, on a sample;
(d) RabbitBus alone (publish_batch + consume acking everything, no database): the transport's
    share of the gap between (a) and (b).
In (a), (b) and (d) the sending side and the receiving side run in two processes, as they do in
production (the relay in the service that publishes, the consumer in the one that subscribes):
the receiving side is a process of its own, started before the clock starts.
"""

from __future__ import annotations

import argparse
import multiprocessing
import queue as queue_module
import statistics
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pika
from pika.adapters.select_connection import SelectConnection
from sqlalchemy import Column, MetaData, String, Table, func, insert, select, text

from bench._infra import database, rabbitmqctl, vhost
from shared.clock import SystemClock
from shared.db import (
    NAMING_CONVENTION,
    UnitOfWork,
    UnitOfWorkFactory,
    bulk_insert,
    define_platform_tables,
    make_engine,
)
from shared.events import EVENTS_EXCHANGE, CloudEvent, EventType
from shared.messaging.base import Outcome, OutgoingMessage, QueueSpec
from shared.messaging.consumer import EventConsumer
from shared.messaging.rabbit import RabbitBus
from shared.messaging.relay import OutboxRelay
from shared.runtime import settle_heap

EVENT_TYPE = EventType.FLOW_RECORDED
RELAY_BATCH = 500
PREFETCH = 200
RAW_WINDOW = 500
RAW_ACK_EVERY = 100
TIMEOUT_S = 600.0


def _sample_data(i: int) -> dict[str, Any]:
    """A payload the size of a real flow.recorded event."""
    return {
        "pump_serial": f"SN{i:08d}", "patient_mrn": f"MRN{i:07d}", "center": "Lyon",
        "measured_flow_ml_per_day": 0.98, "expected_flow_ml_per_day": 1.0,
        "flow_deviation_pct": -2.0, "residual_volume_ml": 3.5, "elapsed_days": 14.0,
        "refill_id": f"refill-{i}",
    }


def _fill_outbox(uow_factory: UnitOfWorkFactory, events: int) -> list[bytes]:
    """Commit `events` events to the outbox in bulk (not timed); return their bodies."""
    outbox = uow_factory.platform.outbox
    now = datetime.now(UTC)
    bodies: list[bytes] = []
    for start in range(0, events, 2000):
        rows = []
        for i in range(start, min(start + 2000, events)):
            event = CloudEvent.create(source="/hai/bench", type=EVENT_TYPE,
                                      data=_sample_data(i), subject=f"SN{i:08d}", time=now)
            body = event.model_dump_json(exclude_none=True)
            bodies.append(body.encode())
            rows.append({"event_id": event.id, "exchange": EVENTS_EXCHANGE,
                         "routing_key": EVENT_TYPE, "body": body, "created_at": now})
        with uow_factory.begin() as uow:
            uow.session.execute(insert(outbox), rows)
    return bodies


def _seed_history(engine: Any, platform: Any, consumer: str, rows: int) -> None:
    """Give the tables the history and statistics of a service that has been running a while.

    On a brand-new database the planner has no statistics and answers the inbox look-up
    (`consumer = ? AND event_id IN (...)`) by reading every row of the consumer: the cost grows
    with the inbox and dwarfs everything else, which a running service (analyzed by
    autovacuum) never sees.
    """
    now = datetime.now(UTC)
    old = datetime(2020, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        for start in range(0, rows, 5000):
            ids = [f"old-{i}" for i in range(start, min(start + 5000, rows))]
            conn.execute(insert(platform.inbox), [
                {"consumer": consumer, "event_id": i, "event_type": EVENT_TYPE,
                 "processed_at": now} for i in ids])
            conn.execute(insert(platform.outbox), [
                {"event_id": i, "exchange": EVENTS_EXCHANGE, "routing_key": EVENT_TYPE,
                 "body": "{}", "created_at": old, "published_at": old} for i in ids])
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))


def _wait_for_consumer(vhost_name: str, queue: str, proc: Any, deadline_s: float = 30.0) -> None:
    """Wait until the receiving process consumes from `queue`; fail if it exits first."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not proc.is_alive():
            raise RuntimeError(f"the consumer of {queue} exited with {proc.exitcode}")
        out = rabbitmqctl("list_queues", "-p", vhost_name, "--no-table-headers", "--quiet",
                          "name", "consumers").stdout
        if any(line.split("\t") == [queue, "1"] for line in out.splitlines()):
            return
        time.sleep(0.1)
    raise RuntimeError(f"no consumer on {queue} after {deadline_s}s")


def _delete_queues(amqp_url: str, *names: str) -> None:
    """Delete a measurement's queues once it is over: a queue left bound to `hai.events` would
    take a copy of every message of the measurements after it (extra broker work, and stale
    messages for the next round's consumer)."""
    with pika.BlockingConnection(pika.URLParameters(amqp_url)) as conn:
        channel = conn.channel()
        for name in names:
            channel.queue_delete(name)


def _effects_table(metadata: MetaData) -> Table:
    return Table("bench_effects", metadata,
                 Column("event_id", String(64), primary_key=True),
                 Column("refill_id", String(64), nullable=False))


def _ours_consumer_side(db_url: str, amqp_url: str, queue: QueueSpec, events: int, batch: bool,
                        report: Any) -> None:
    """The subscribing service: RabbitBus.consume + EventConsumer, each handled event one row."""
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    platform = define_platform_tables(metadata)
    effects = _effects_table(metadata)
    engine = make_engine(db_url)
    uow_factory = UnitOfWorkFactory(engine, platform, SystemClock(), "bench")

    def handle(uow: UnitOfWork, event: CloudEvent) -> None:
        # a fixed statement and its parameters, as the services write (not `.values()`, which
        # builds and caches a statement per call)
        uow.session.execute(insert(effects), {"event_id": event.id,
                                              "refill_id": event.data["refill_id"]})

    def handle_run(uow: UnitOfWork, run: Sequence[CloudEvent]) -> None:
        bulk_insert(uow.session, effects, [
            {"event_id": e.id, "refill_id": e.data["refill_id"]} for e in run])

    handled = 0
    all_handled = threading.Event()
    done_at: list[float] = []

    def on_outcome(_name: str, outcome: Outcome) -> None:
        nonlocal handled
        # called once the batch's transaction has committed
        handled += outcome.action == "ack"
        if handled >= events and not done_at:
            done_at.append(time.monotonic())
            all_handled.set()

    bus = RabbitBus(amqp_url)
    consumer = EventConsumer("bench", queue, {} if batch else {EVENT_TYPE: handle}, uow_factory,
                             on_outcome=on_outcome,
                             batch_handlers={EVENT_TYPE: handle_run} if batch else None)
    settle_heap()  # as `hai worker` does once started
    stop = threading.Event()
    thread = threading.Thread(target=bus.consume, args=(queue, consumer.process),
                              kwargs={"prefetch": PREFETCH, "stop": stop, "retry_delay_ms": 2000},
                              daemon=True)
    thread.start()
    try:
        if not all_handled.wait(TIMEOUT_S):
            report.put(("error", f"only {handled}/{events} handled after {TIMEOUT_S}s"))
            return
    finally:
        stop.set()
        thread.join(10)
        bus.close()
    with engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(effects)).scalar_one()
    engine.dispose()
    if rows != events:
        report.put(("error", f"{rows} rows for {events} events"))
    else:
        report.put(("done", done_at[0]))


def _receiving_side(target: Any, *args: Any) -> tuple[Any, Any]:
    """Start `target(*args, report)` in a process of its own; return (process, report queue)."""
    ctx = multiprocessing.get_context("spawn")
    report = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, report), daemon=True)
    proc.start()
    return proc, report


def _outcome(proc: Any, report: Any, what: str) -> Any:
    """What the receiving side reported: its figure, or an error if it failed or went silent."""
    try:
        kind, value = report.get(timeout=TIMEOUT_S)
    except queue_module.Empty:
        raise RuntimeError(f"{what}: no report after {TIMEOUT_S}s") from None
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    if kind != "done":
        raise RuntimeError(f"{what}: {value}")
    return value


def measure_ours(amqp_url: str, vhost_name: str, db_url: str, events: int,
                 *, batch: bool = False) -> dict[str, float]:
    """(a) Outbox → OutboxRelay → RabbitBus → EventConsumer → one row per event, committed.

    `batch`: the handler takes each run of events in one call (one bulk_insert, a COPY, for the
    run), as a service's batch handler may; otherwise one call and one INSERT per event."""
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    platform = define_platform_tables(metadata)
    _effects_table(metadata)
    engine = make_engine(db_url)
    metadata.create_all(engine)
    uow_factory = UnitOfWorkFactory(engine, platform, SystemClock(), "bench")
    _seed_history(engine, platform, "bench", events)
    _fill_outbox(uow_factory, events)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))

    published = 0
    relay_done_at: list[float] = []

    def on_published(count: int) -> None:
        nonlocal published
        published += count
        if published >= events and not relay_done_at:
            relay_done_at.append(time.monotonic())

    queue = QueueSpec("bench.ours-batch" if batch else "bench.ours",
                      ((EVENTS_EXCHANGE, "hai.scheduling.#"),))
    bus = RabbitBus(amqp_url)
    bus.declare([queue])
    proc, report = _receiving_side(_ours_consumer_side, db_url, amqp_url, queue, events, batch)
    _wait_for_consumer(vhost_name, queue.name, proc)
    relay = OutboxRelay(uow_factory, bus.publisher, batch_size=RELAY_BATCH,
                        on_published=on_published)
    settle_heap()  # the relay runs in `hai worker`, which does this once started
    stop = threading.Event()
    started = time.monotonic()
    relay_thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    relay_thread.start()
    try:
        done_at = _outcome(proc, report, "ours")
    finally:
        stop.set()
        relay_thread.join(10)
        bus.close()
        engine.dispose()
        _delete_queues(amqp_url, queue.name, queue.retry_queue, queue.dlq)
    elapsed = done_at - started
    relay_elapsed = (relay_done_at[0] if relay_done_at else done_at) - started
    return {"ours_events_per_s": events / elapsed, "ours_seconds": elapsed,
            "ours_relay_events_per_s": events / relay_elapsed}


class _RawPublisher:
    """Pipelined confirms done by hand: keep `window` messages unconfirmed until all are sent.

    `routed`: publish as the relay does, to the topic exchange with the event's routing key and
    its id as `message_id`; otherwise to the default exchange, straight to `queue`."""

    def __init__(self, params: pika.URLParameters, queue: str, bodies: Sequence[bytes],
                 window: int, *, routed: bool = True) -> None:
        self.params, self.queue, self.bodies, self.window = params, queue, bodies, window
        self.sent = 0
        self.confirmed = 0
        self.error: BaseException | None = None
        self._conn: Any = None
        self._channel: Any = None
        self._exchange, self._routing_key = (EVENTS_EXCHANGE, EVENT_TYPE) if routed else ("", queue)
        self._routed = routed
        self._props = pika.BasicProperties(content_type="application/cloudevents+json",
                                           delivery_mode=2)

    def run(self) -> None:
        self._conn = SelectConnection(self.params, on_open_callback=self._on_open,
                                      on_open_error_callback=self._on_error,
                                      on_close_callback=self._on_error)
        self._conn.ioloop.start()

    def _on_error(self, conn: Any, exc: BaseException) -> None:
        if self.confirmed < len(self.bodies):
            self.error = exc
        conn.ioloop.stop()

    def _on_open(self, conn: Any) -> None:
        conn.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel: Any) -> None:
        self._channel = channel
        channel.confirm_delivery(self._on_confirm, callback=lambda _f: self._fill())

    def _fill(self) -> None:
        while self.sent < len(self.bodies) and self.sent - self.confirmed < self.window:
            props = self._props
            if self._routed:
                props = pika.BasicProperties(content_type="application/cloudevents+json",
                                             delivery_mode=2, message_id=str(self.sent))
            self._channel.basic_publish(self._exchange, self._routing_key,
                                        self.bodies[self.sent], props)
            self.sent += 1

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        if isinstance(method, pika.spec.Basic.Nack):
            self.error = RuntimeError("nacked")
        self.confirmed = method.delivery_tag if method.multiple else self.confirmed + 1
        if self.confirmed >= len(self.bodies):
            self._conn.close()
        else:
            self._fill()


class _RawConsumer:
    """A prefetching consumer acking `ack_every` messages at once."""

    def __init__(self, params: pika.URLParameters, queue: str, expected: int,
                 prefetch: int, ack_every: int) -> None:
        self.params, self.queue, self.expected = params, queue, expected
        self.prefetch, self.ack_every = prefetch, ack_every
        self.received = 0
        self.ready = threading.Event()
        self.done = threading.Event()
        self.done_at = 0.0
        self._conn: Any = None

    def run(self) -> None:
        self._conn = SelectConnection(self.params, on_open_callback=self._on_open,
                                      on_close_callback=lambda c, _e: c.ioloop.stop())
        self._conn.ioloop.start()

    def _on_open(self, conn: Any) -> None:
        conn.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel: Any) -> None:
        channel.basic_qos(prefetch_count=self.prefetch, callback=lambda _f: self._consume(channel))

    def _consume(self, channel: Any) -> None:
        channel.basic_consume(self.queue, self._on_message,
                              callback=lambda _f: self.ready.set())

    def _on_message(self, channel: Any, method: Any, _props: Any, _body: bytes) -> None:
        self.received += 1
        if self.received % self.ack_every == 0 or self.received >= self.expected:
            channel.basic_ack(method.delivery_tag, multiple=True)
        if self.received >= self.expected:
            self.done_at = time.monotonic()
            self.done.set()
            self._conn.close()


def _raw_consumer_side(amqp_url: str, queue: str, expected: int, report: Any) -> None:
    """The raw receiving side, in a process of its own."""
    consumer = _RawConsumer(pika.URLParameters(amqp_url), queue, expected, PREFETCH,
                            RAW_ACK_EVERY)
    threading.Thread(target=consumer.run, daemon=True).start()
    if not consumer.ready.wait(20):
        report.put(("error", "raw consumer did not start"))
        return
    report.put(("ready", None))
    if consumer.done.wait(TIMEOUT_S):
        report.put(("done", consumer.done_at))
    else:
        report.put(("error", f"raw consumer got {consumer.received}/{expected}"))


def measure_broker_limit(amqp_url: str, bodies: Sequence[bytes],
                         *, routed: bool = True) -> dict[str, float]:
    """(b) Raw pika, pipelined confirms and multi-acks: what the broker and client allow.

    `routed` (b): through `hai.events` as the relay publishes; otherwise (b0) the default
    exchange straight to the queue."""
    queue = "bench.raw" if routed else "bench.raw-direct"
    with pika.BlockingConnection(pika.URLParameters(amqp_url)) as conn:
        channel = conn.channel()
        channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        if routed:
            channel.exchange_declare(EVENTS_EXCHANGE, exchange_type="topic", durable=True)
            channel.queue_bind(queue, EVENTS_EXCHANGE, routing_key="hai.scheduling.#")
    proc, report = _receiving_side(_raw_consumer_side, amqp_url, queue, len(bodies))
    kind, value = report.get(timeout=60)
    if kind != "ready":
        raise RuntimeError(f"raw: {value}")
    publisher = _RawPublisher(pika.URLParameters(amqp_url), queue, bodies, RAW_WINDOW,
                              routed=routed)
    started = time.monotonic()
    pub_thread = threading.Thread(target=publisher.run, daemon=True)
    pub_thread.start()
    pub_thread.join(TIMEOUT_S)
    published = time.monotonic() - started
    if publisher.error is not None:
        proc.kill()
        raise RuntimeError(f"raw publishing failed: {publisher.error}")
    try:
        elapsed = _outcome(proc, report, "raw") - started
    finally:
        _delete_queues(amqp_url, queue)
    return {"limit_msgs_per_s": len(bodies) / elapsed,
            "limit_publish_msgs_per_s": len(bodies) / published}


def _transport_consumer_side(amqp_url: str, queue: QueueSpec, expected: int,
                             report: Any) -> None:
    """RabbitBus.consume acking everything, no database, in a process of its own."""
    bus = RabbitBus(amqp_url)
    received = 0
    done = threading.Event()
    done_at: list[float] = []

    def process(batch: Sequence[Any]) -> list[Outcome]:
        nonlocal received
        received += len(batch)
        if received >= expected and not done_at:
            done_at.append(time.monotonic())
            done.set()
        return [Outcome.ack()] * len(batch)

    stop = threading.Event()
    thread = threading.Thread(target=bus.consume, args=(queue, process),
                              kwargs={"prefetch": PREFETCH, "stop": stop,
                                      "retry_delay_ms": 2000}, daemon=True)
    thread.start()
    try:
        if done.wait(TIMEOUT_S):
            report.put(("done", done_at[0]))
        else:
            report.put(("error", f"transport consumer got {received}/{expected}"))
    finally:
        stop.set()
        thread.join(10)
        bus.close()


def measure_transport(amqp_url: str, vhost_name: str, bodies: Sequence[bytes]) -> dict[str, float]:
    """(d) RabbitBus alone: publish_batch of RELAY_BATCH, consume acking all, no database."""
    queue = QueueSpec("bench.transport", ((EVENTS_EXCHANGE, "bench.transport"),))
    bus = RabbitBus(amqp_url)
    bus.declare([queue])
    proc, report = _receiving_side(_transport_consumer_side, amqp_url, queue, len(bodies))
    _wait_for_consumer(vhost_name, queue.name, proc)
    messages = [OutgoingMessage(message_id=str(i), exchange=EVENTS_EXCHANGE,
                                routing_key="bench.transport", body=body)
                for i, body in enumerate(bodies)]
    publisher = bus.publisher()
    started = time.monotonic()
    try:
        for start in range(0, len(messages), RELAY_BATCH):
            publisher.publish_batch(messages[start:start + RELAY_BATCH])
        published = time.monotonic() - started
        elapsed = _outcome(proc, report, "transport") - started
    finally:
        bus.close()
        _delete_queues(amqp_url, queue.name, queue.retry_queue, queue.dlq)
    return {"transport_msgs_per_s": len(bodies) / elapsed,
            "transport_publish_msgs_per_s": len(bodies) / published}


def measure_naive(amqp_url: str, bodies: Sequence[bytes]) -> dict[str, float]:
    """(c) Publishing that waits for each message's confirm before sending the next."""
    queue = "bench.naive"
    with pika.BlockingConnection(pika.URLParameters(amqp_url)) as conn:
        channel = conn.channel()
        channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        channel.confirm_delivery()
        props = pika.BasicProperties(content_type="application/cloudevents+json",
                                     delivery_mode=2)
        started = time.monotonic()
        for body in bodies:
            channel.basic_publish("", queue, body, props)
        elapsed = time.monotonic() - started
        channel.queue_delete(queue)
    return {"naive_msgs_per_s": len(bodies) / elapsed}


RATIOS = {  # figure name: (numerator, denominator), each pair measured in the same round
    "ratio_ours_to_limit": ("ours_events_per_s", "limit_msgs_per_s"),
    "ratio_ours_batch_to_limit": ("ours_batch_events_per_s", "limit_msgs_per_s"),
    "ratio_transport_to_limit": ("transport_msgs_per_s", "limit_msgs_per_s"),
    "ratio_ours_batch_to_direct_limit": ("ours_batch_events_per_s", "limit_direct_msgs_per_s"),
}


def _round(amqp_url: str, vhost_name: str, events: int, bodies: Sequence[bytes]) -> dict[str, float]:
    """One of each measurement, back to back; each of ours on a database of its own."""
    result: dict[str, float] = {}
    with database("pipeline") as db_url:
        result.update(measure_ours(amqp_url, vhost_name, db_url, events))
    with database("pipeline_batch") as batch_db_url:
        batch = measure_ours(amqp_url, vhost_name, batch_db_url, events, batch=True)
    result.update({k.replace("ours_", "ours_batch_"): v for k, v in batch.items()})
    result.update(measure_broker_limit(amqp_url, bodies))
    direct = measure_broker_limit(amqp_url, bodies, routed=False)
    result.update({k.replace("limit_", "limit_direct_"): v for k, v in direct.items()})
    result.update(measure_transport(amqp_url, vhost_name, bodies))
    for name, (num, den) in RATIOS.items():
        result[name] = result[num] / result[den]
    return result


def run(events: int = 20000, naive_sample: int = 2000, rounds: int = 3) -> dict[str, Any]:
    """Measure ours, the broker's limit and naive confirms `rounds` times, interleaved; return
    each figure's median and its range over the rounds.

    This machine's speed drifts by tens of percent from minute to minute, so one measurement of
    each, a minute apart, would compare different machines: every round measures all of them
    back to back, and a ratio is taken within one round."""
    now = datetime.now(UTC)
    bodies = [  # the bodies the outbox holds in (a)
        CloudEvent.create(source="/hai/bench", type=EVENT_TYPE, data=_sample_data(i),
                          subject=f"SN{i:08d}", time=now)
        .model_dump_json(exclude_none=True).encode() for i in range(events)
    ]
    with vhost("pipeline") as amqp_url:
        vhost_name = amqp_url.rsplit("/", 1)[-1]
        per_round = [_round(amqp_url, vhost_name, events, bodies) for _ in range(max(1, rounds))]
        naive = measure_naive(amqp_url, bodies[:naive_sample])
    result: dict[str, Any] = {"events": events, "rounds": len(per_round)}
    for key in per_round[0]:
        values = [r[key] for r in per_round]
        result[key] = statistics.median(values)
        result[f"{key}_range"] = [min(values), max(values)]
    result.update(naive)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: run and print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--naive-sample", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    r = run(args.events, args.naive_sample, args.rounds)
    print(f"events: {int(r['events'])}; medians of {r['rounds']} interleaved rounds")
    print(f"(a) ours, outbox → consumer commit: {r['ours_events_per_s']:8.0f} events/s "
          f"({r['ours_seconds']:.1f} s; relay alone {r['ours_relay_events_per_s']:.0f}/s)")
    print(f"(a') ours with a batch handler:     {r['ours_batch_events_per_s']:8.0f} events/s")
    print(f"(b) broker limit, raw pika:         {r['limit_msgs_per_s']:8.0f} msgs/s "
          f"(publishing alone {r['limit_publish_msgs_per_s']:.0f}/s)")
    print(f"(b0) raw pika, default exchange:    {r['limit_direct_msgs_per_s']:8.0f} msgs/s "
          f"(no routing, no message_id; ours with batch handler / this: "
          f"{r['ratio_ours_batch_to_direct_limit']:.0%})")
    print(f"(c) naive, one confirm at a time:   {r['naive_msgs_per_s']:8.0f} msgs/s")
    print(f"(d) RabbitBus alone, no database:   {r['transport_msgs_per_s']:8.0f} msgs/s "
          f"(publish_batch alone {r['transport_publish_msgs_per_s']:.0f}/s)")
    for label, key in (("ours / limit", "ratio_ours_to_limit"),
                       ("ours with batch handler / limit", "ratio_ours_batch_to_limit"),
                       ("RabbitBus / limit", "ratio_transport_to_limit")):
        low, high = r[f"{key}_range"]
        print(f"{label}: {r[key]:.0%} (rounds: {low:.0%}–{high:.0%})")


if __name__ == "__main__":
    main()
