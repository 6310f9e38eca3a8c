"""The in-process bus: RabbitMQ's twin for `hai up` without a broker, and for unit tests.

Same semantics where they matter (topic routing, batches, retries with a delay, dead letters
with their reason); messages live in memory, so it serves one process only.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from shared.messaging.base import (
    HEADER_ATTEMPTS,
    HEADER_DLQ_REASON,
    HEADER_ERROR,
    HEADER_ORIGINAL_QUEUE,
    BatchProcessor,
    Delivery,
    OutgoingMessage,
    QueueSpec,
)


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: `*` is one word, `#` zero or more."""
    pat, key = pattern.split("."), routing_key.split(".")

    def match(i: int, j: int) -> bool:
        if i == len(pat):
            return j == len(key)
        if pat[i] == "#":
            return any(match(i + 1, k) for k in range(j, len(key) + 1))
        if j == len(key):
            return False
        return (pat[i] == "*" or pat[i] == key[j]) and match(i + 1, j + 1)

    return match(0, 0)


class InProcessBus:
    """Topic exchanges and queues in memory; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, queue.Queue[Delivery]] = {}
        self._specs: dict[str, QueueSpec] = {}
        self.dead_letters: dict[str, list[Delivery]] = {}
        self.published: list[OutgoingMessage] = []

    def declare(self, queues: Sequence[QueueSpec]) -> None:
        with self._lock:
            for spec in queues:
                self._specs[spec.name] = spec
                self._queues.setdefault(spec.name, queue.Queue())
                self.dead_letters.setdefault(spec.name, [])

    def publisher(self) -> InProcessBus:
        return self

    def publish_batch(self, messages: Sequence[OutgoingMessage], timeout: float = 30.0) -> None:
        with self._lock:
            targets = list(self._specs.values())
            self.published.extend(messages)
        for msg in messages:
            for spec in targets:
                if any(ex == msg.exchange and topic_matches(pat, msg.routing_key)
                       for ex, pat in spec.bindings):
                    self._queues[spec.name].put(Delivery(
                        body=msg.body, routing_key=msg.routing_key, exchange=msg.exchange,
                        message_id=msg.message_id, headers=dict(msg.headers),
                    ))

    def publish_batch_async(self, messages: Sequence[OutgoingMessage],
                            timeout: float = 30.0) -> Callable[[], None]:
        self.publish_batch(messages, timeout)  # delivered at once: nothing to wait for
        return lambda: None

    def depth(self, name: str) -> int:
        return self._queues[name].qsize()

    def queue_depths(self, names: Sequence[str]) -> dict[str, int]:
        """Messages waiting in each queue, and in its `.dlq`."""
        with self._lock:
            out = {n: self._queues[n].qsize() for n in names if n in self._queues}
            out.update({f"{n}.dlq": len(self.dead_letters[n]) for n in names
                        if n in self.dead_letters})
        return out

    def take(self, name: str, limit: int = 1000) -> list[Delivery]:
        """Remove and return up to `limit` waiting deliveries (for synchronous tests)."""
        out: list[Delivery] = []
        q = self._queues[name]
        while len(out) < limit:
            try:
                out.append(q.get_nowait())
            except queue.Empty:
                break
        return out

    def consume(
        self,
        queue_spec: QueueSpec,
        process: BatchProcessor,
        *,
        prefetch: int = 100,
        stop: Any,
        retry_delay_ms: int = 2000,
    ) -> None:
        q = self._queues[queue_spec.name]
        while not stop.is_set():
            try:
                first = q.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < prefetch:
                try:
                    batch.append(q.get_nowait())
                except queue.Empty:
                    break
            try:
                outcomes = process(batch)
            except Exception:  # noqa: BLE001 - e.g. the database is away: put the batch back whole
                for delivery in batch:
                    q.put(delivery)
                stop.wait(1.0)
                continue
            for delivery, outcome in zip(batch, outcomes, strict=True):
                if outcome.action == "retry":
                    headers = dict(delivery.headers)
                    headers[HEADER_ATTEMPTS] = delivery.attempts + 1
                    headers[HEADER_ERROR] = outcome.reason
                    again = Delivery(body=delivery.body, routing_key=delivery.routing_key,
                                     exchange=delivery.exchange, message_id=delivery.message_id,
                                     headers=headers, redelivered=True)
                    timer = threading.Timer(retry_delay_ms / 1000, q.put, args=(again,))
                    timer.daemon = True
                    timer.start()
                elif outcome.action == "dead_letter":
                    headers = dict(delivery.headers)
                    headers[HEADER_DLQ_REASON] = outcome.reason
                    headers[HEADER_ORIGINAL_QUEUE] = queue_spec.name
                    delivery.headers = headers
                    with self._lock:
                        self.dead_letters[queue_spec.name].append(delivery)

    def check(self) -> None:
        return None

    def close(self) -> None:
        return None
