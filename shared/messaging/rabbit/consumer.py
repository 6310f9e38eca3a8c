"""A queue consumed in batches on a BlockingConnection of its own, rebuilt after failures.

A delivery whose handling asks for a retry is copied to the queue's retry queue (back after the
delay); one that is dead-lettered is copied to its DLQ with the reason. The original is acked
only once the broker confirmed its copy."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pika.exceptions
import structlog

from shared.messaging.base import (
    DLX_EXCHANGE,
    HEADER_ATTEMPTS,
    HEADER_DLQ_REASON,
    HEADER_ERROR,
    HEADER_ORIGINAL_EXCHANGE,
    HEADER_ORIGINAL_QUEUE,
    HEADER_ORIGINAL_ROUTING_KEY,
    RETRY_EXCHANGE,
    BatchProcessor,
    Delivery,
    QueueSpec,
)
from shared.messaging.rabbit.connection import close_quietly, copy_properties, short
from shared.messaging.rabbit.topology import topology

log = structlog.get_logger(__name__)

MAX_BACKOFF_S = 10.0


class _ConsumerCancelled(Exception):
    """The broker cancelled our consumer (queue deleted or moved): reconnect."""


class QueueConsumer:
    """One `consume` call: a BlockingConnection on the calling thread, rebuilt after failures.

    `retry_delay_ms` is this consumer's delay before a retry; `declared_retry_delay_ms` the one
    its retry queue is declared with, if this consumer is the first to declare it."""

    def __init__(self, connect: Callable[[str], Any], queue: QueueSpec, process: BatchProcessor,
                 *, prefetch: int, stop: Any, closed: threading.Event, retry_delay_ms: int,
                 declared_retry_delay_ms: int) -> None:
        self.connect = connect
        self.queue = queue
        self.process = process
        self.prefetch = max(1, prefetch)
        self.stop = stop
        self.closed = closed
        self.retry_delay_ms = retry_delay_ms
        self.declared_retry_delay_ms = declared_retry_delay_ms
        self._backoff = 0.5

    def stopped(self) -> bool:
        return bool(self.stop.is_set()) or self.closed.is_set()

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopped() and time.monotonic() < deadline:
            self.stop.wait(min(0.2, max(deadline - time.monotonic(), 0)))

    def run(self) -> None:
        while not self.stopped():
            try:
                self._session()
            except Exception as exc:  # noqa: BLE001 - a consumer outlives broker outages and bugs
                if self.stopped():
                    break
                log.warning("rabbit.consumer_reconnecting", queue=self.queue.name,
                            error=short(exc), retry_in_s=self._backoff)
                self._pause(self._backoff)
                self._backoff = min(self._backoff * 2, MAX_BACKOFF_S)

    def _session(self) -> None:
        conn = self.connect(f"consumer {self.queue.name}")
        try:
            self._ensure_topology(conn)
            channel = conn.channel()
            publish = conn.channel()
            publish.confirm_delivery()
            # twice the batch in flight: the next batch arrives while this one is handled
            channel.basic_qos(prefetch_count=self.prefetch * 2)
            pending: list[tuple[Any, Any, bytes]] = []
            channel.basic_consume(
                self.queue.name,
                lambda _ch, method, props, body: pending.append((method, props, body)),
            )
            self._backoff = 0.5
            log.info("rabbit.consuming", queue=self.queue.name, prefetch=self.prefetch)
            while not self.stopped():
                # returns as soon as deliveries are dispatched, or after 0.2 s to look at `stop`
                conn.process_data_events(time_limit=0.2)
                if not pending:
                    if not channel.consumer_tags:
                        raise _ConsumerCancelled(f"consumer on {self.queue.name} cancelled")
                    continue
                if len(pending) < self.prefetch:
                    conn.process_data_events(time_limit=0)  # take what else already arrived
                batch = pending[: self.prefetch]
                del pending[: self.prefetch]
                self._handle(channel, publish, batch)
        finally:
            # unacked deliveries go back to the queue when the connection closes
            close_quietly(conn)

    def _ensure_topology(self, conn: Any) -> None:
        # the retry and dead-letter routes must exist before we rely on them (after a reset too)
        channel = conn.channel()
        for what, declare in topology([self.queue], self.declared_retry_delay_ms):
            try:
                declare(channel)
            except pika.exceptions.ChannelClosedByBroker as exc:
                # declared elsewhere with other arguments (another retry delay): use it as it
                # is, and still declare the rest; the failure closed the channel
                log.warning("rabbit.declare_mismatch", declaring=what, error=short(exc))
                channel = conn.channel()

    def _delivery(self, method: Any, props: Any, body: bytes) -> Delivery:
        headers = dict(props.headers or {})
        exchange, routing_key = method.exchange, method.routing_key
        if exchange == "" and HEADER_ORIGINAL_ROUTING_KEY in headers:
            # came back from the retry queue (or a DLQ replay): show it as first routed
            exchange = str(headers.get(HEADER_ORIGINAL_EXCHANGE, ""))
            routing_key = str(headers[HEADER_ORIGINAL_ROUTING_KEY])
        return Delivery(body=body, routing_key=routing_key, exchange=exchange,
                        message_id=props.message_id, headers=headers,
                        redelivered=bool(method.redelivered), tag=method.delivery_tag)

    def _handle(self, channel: Any, publish: Any, batch: list[tuple[Any, Any, bytes]]) -> None:
        deliveries = [self._delivery(m, p, b) for m, p, b in batch]
        try:
            outcomes = self.process(deliveries)
            if len(outcomes) != len(deliveries):
                raise ValueError(f"{len(outcomes)} outcomes for {len(deliveries)} deliveries")
        except Exception as exc:  # noqa: BLE001 - a processor bug must not kill the consumer
            log.exception("rabbit.process_failed", queue=self.queue.name, error=short(exc))
            # nothing was acked: give the batch back after a pause so a bug does not spin
            self._pause(1.0)
            channel.basic_nack(deliveries[-1].tag, multiple=True, requeue=True)
            return
        if all(o.action == "ack" for o in outcomes):
            channel.basic_ack(deliveries[-1].tag, multiple=True)
            return
        for delivery, outcome, (_, props, _) in zip(deliveries, outcomes, batch, strict=True):
            if outcome.action == "retry":
                self._publish_retry(publish, delivery, props, outcome.reason)
            elif outcome.action != "ack":
                reason = outcome.reason if outcome.action == "dead_letter" else (
                    f"unknown outcome {outcome.action!r}: {outcome.reason}")
                self._publish_dead_letter(publish, delivery, props, reason)
            # only now, with its copy confirmed by the broker, may the original go
            channel.basic_ack(delivery.tag)

    def _publish_retry(self, publish: Any, delivery: Delivery, props: Any,
                       reason: str | None) -> None:
        headers = dict(delivery.headers)
        headers[HEADER_ATTEMPTS] = delivery.attempts + 1
        headers[HEADER_ERROR] = reason or ""
        # it comes back through the default exchange: remember where it was first routed
        headers.setdefault(HEADER_ORIGINAL_EXCHANGE, delivery.exchange)
        headers.setdefault(HEADER_ORIGINAL_ROUTING_KEY, delivery.routing_key)
        # the per-message expiration lets this call's delay differ from the declared one
        # (the lower of the two wins)
        publish.basic_publish(
            RETRY_EXCHANGE, self.queue.name, delivery.body,
            copy_properties(props, headers, expiration=str(self.retry_delay_ms)),
            mandatory=True,
        )

    def _publish_dead_letter(self, publish: Any, delivery: Delivery, props: Any,
                             reason: str | None) -> None:
        headers = dict(delivery.headers)
        headers[HEADER_DLQ_REASON] = reason or ""
        headers[HEADER_ORIGINAL_QUEUE] = self.queue.name
        headers[HEADER_ORIGINAL_EXCHANGE] = delivery.exchange
        headers[HEADER_ORIGINAL_ROUTING_KEY] = delivery.routing_key
        publish.basic_publish(DLX_EXCHANGE, self.queue.name, delivery.body,
                              copy_properties(props, headers), mandatory=True)
        log.warning("rabbit.dead_lettered", queue=self.queue.name,
                    message_id=delivery.message_id, reason=reason)
