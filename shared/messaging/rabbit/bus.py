"""`RabbitBus`: the Bus on RabbitMQ, durable quorum queues with a retry queue and a DLQ each."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import pika
import pika.exceptions

from shared.messaging.base import BatchProcessor, QueueSpec
from shared.messaging.rabbit.connection import (
    BrokerUnavailable,
    Nodes,
    broker_urls,
    close_quietly,
    connection_parameters,
    short,
)
from shared.messaging.rabbit.consumer import QueueConsumer
from shared.messaging.rabbit.publisher import RabbitPublisher
from shared.messaging.rabbit.topology import topology

CHECK_CACHE_S = 5.0


class RabbitBus:
    """The Bus on RabbitMQ: durable quorum queues, a retry queue with a delay and a DLQ each.
    `url` may name a cluster's nodes, separated by commas: a connection goes to whichever answers."""

    def __init__(self, url: str, *, heartbeat_seconds: int = 30,
                 retry_delay_ms: int = 2000) -> None:
        self.nodes = Nodes(broker_urls(url))
        self.url = self.nodes.urls[0]
        self.heartbeat_seconds = heartbeat_seconds
        self.retry_delay_ms = retry_delay_ms
        self.closed = threading.Event()
        self._publishers: weakref.WeakSet[RabbitPublisher] = weakref.WeakSet()
        self._check_lock = threading.Lock()
        self._checked_at: float | None = None

    def parameters(self, purpose: str, *, connect_timeout: float = 10.0,
                   url: str | None = None) -> pika.URLParameters:
        """Connection parameters of one node (the first to try, unless `url` names one), with
        our heartbeat, timeouts and a readable name."""
        return connection_parameters(url or self.nodes.in_order()[0], purpose,
                                     heartbeat_seconds=self.heartbeat_seconds,
                                     connect_timeout=connect_timeout)

    def connect(self, purpose: str, *, connect_timeout: float = 10.0) -> Any:
        """A BlockingConnection to the first node that answers, for the calling thread only."""
        failure: Exception | None = None
        for url in self.nodes.in_order():
            try:
                conn = pika.BlockingConnection(
                    self.parameters(purpose, connect_timeout=connect_timeout, url=url))
            except Exception as exc:  # noqa: BLE001 - any failure: the next node
                self.nodes.failed(url)
                failure = exc
                continue
            self.nodes.answered(url)
            return conn
        assert failure is not None
        raise failure

    def declare(self, queues: Sequence[QueueSpec]) -> None:
        """Declare the exchanges and these queues, with their retry and dead-letter queues."""
        conn = self.connect("declare")
        try:
            channel = conn.channel()
            for _, declare in topology(queues, self.retry_delay_ms):
                declare(channel)
        finally:
            close_quietly(conn)

    def publisher(self) -> RabbitPublisher:
        """A publisher for one thread's use (its connection runs in a thread of its own)."""
        pub = RabbitPublisher(lambda url: self.parameters("publisher", url=url), self.nodes)
        self._publishers.add(pub)
        return pub

    def consume(
        self,
        queue: QueueSpec,
        process: BatchProcessor,
        *,
        prefetch: int = 200,
        stop: Any,
        retry_delay_ms: int = 2000,
    ) -> None:
        """Consume `queue` in batches until `stop` is set, reconnecting with backoff."""
        QueueConsumer(self.connect, queue, process, prefetch=prefetch, stop=stop,
                      closed=self.closed, retry_delay_ms=retry_delay_ms,
                      declared_retry_delay_ms=self.retry_delay_ms).run()

    def check(self) -> None:
        """Raise BrokerUnavailable when the broker cannot be reached (a success is kept 5 s)."""
        with self._check_lock:
            if self._checked_at is not None and time.monotonic() - self._checked_at < CHECK_CACHE_S:
                return
            try:
                close_quietly(self.connect("check", connect_timeout=2.0))
            except Exception as exc:  # noqa: BLE001 - any failure means unreachable
                self._checked_at = None
                raise BrokerUnavailable(f"RabbitMQ unreachable: {short(exc)}") from exc
            self._checked_at = time.monotonic()

    def close(self) -> None:
        """Close the publishers made here and end the consumers' loops."""
        self.closed.set()
        for pub in list(self._publishers):
            pub.close()

    def queue_depths(self, names: Sequence[str]) -> dict[str, int]:
        """Messages ready in each queue and in its `.dlq` (passive declares: creates nothing)."""
        conn = self.connect("queue-depths", connect_timeout=5.0)
        out: dict[str, int] = {}
        try:
            channel = conn.channel()
            for name in names:
                for queue_name in (name, f"{name}.dlq"):
                    try:
                        out[queue_name] = channel.queue_declare(
                            queue_name, passive=True).method.message_count
                    except pika.exceptions.ChannelClosedByBroker:
                        channel = conn.channel()  # not declared (yet): a 404 closes the channel
            return out
        finally:
            close_quietly(conn)
