"""The small interface pika stays behind, shared by RabbitMQ and the in-process bus."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

DLX_EXCHANGE = "hai.dlx"
RETRY_EXCHANGE = "hai.retry"

HEADER_ATTEMPTS = "x-hai-attempts"
HEADER_ERROR = "x-hai-error"
HEADER_DLQ_REASON = "x-hai-dlq-reason"
HEADER_ORIGINAL_QUEUE = "x-hai-original-queue"
HEADER_ORIGINAL_ROUTING_KEY = "x-hai-original-routing-key"
HEADER_ORIGINAL_EXCHANGE = "x-hai-original-exchange"


class PublishError(Exception):
    """The broker did not confirm every message of a batch."""


@dataclass(frozen=True)
class OutgoingMessage:
    """One message to publish: persistent, `message_id` = the event id."""

    message_id: str
    exchange: str
    routing_key: str
    body: bytes
    content_type: str = "application/cloudevents+json"
    headers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QueueSpec:
    """A durable quorum queue, its bindings, and its retry and dead-letter queues."""

    name: str
    bindings: tuple[tuple[str, str], ...]  # (exchange, routing key pattern)
    # bindings an earlier release declared and this one no longer wants: removed on declare, so
    # that an upgraded broker stops routing those messages here
    retired_bindings: tuple[tuple[str, str], ...] = ()

    @property
    def dlq(self) -> str:
        return f"{self.name}.dlq"

    @property
    def retry_queue(self) -> str:
        return f"{self.name}.retry"


@dataclass
class Delivery:
    """A received message, whatever the transport."""

    body: bytes
    routing_key: str
    exchange: str
    message_id: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    redelivered: bool = False
    tag: Any = None

    @property
    def attempts(self) -> int:
        """How many times this message was already tried and failed."""
        try:
            return int(self.headers.get(HEADER_ATTEMPTS, 0))
        except (TypeError, ValueError):
            return 0


@dataclass(frozen=True)
class Outcome:
    """What the transport must do with a delivery once its handling is over."""

    action: str  # "ack" | "retry" | "dead_letter"
    reason: str | None = None

    @classmethod
    def ack(cls) -> Outcome:
        return cls("ack")

    @classmethod
    def retry(cls, reason: str) -> Outcome:
        return cls("retry", reason)

    @classmethod
    def dead_letter(cls, reason: str) -> Outcome:
        return cls("dead_letter", reason)


BatchProcessor = Callable[[Sequence[Delivery]], list[Outcome]]


class Publisher(Protocol):
    def publish_batch(self, messages: Sequence[OutgoingMessage], timeout: float = 30.0) -> None:
        """Publish every message persistently; return once the broker confirmed them all."""

    def publish_batch_async(self, messages: Sequence[OutgoingMessage],
                            timeout: float = 30.0) -> Callable[[], None]:
        """Send the messages; the returned callable waits for their confirms (PublishError)."""

    def close(self) -> None: ...


class Bus(Protocol):
    """A message broker: RabbitMQ, or the in-process bus."""

    def declare(self, queues: Sequence[QueueSpec]) -> None:
        """Declare the exchanges and these queues (idempotent)."""

    def publisher(self) -> Publisher:
        """A publisher for one thread's use."""

    def consume(
        self,
        queue: QueueSpec,
        process: BatchProcessor,
        *,
        prefetch: int,
        stop: Any,
        retry_delay_ms: int,
    ) -> None:
        """Consume `queue` until `stop` (a threading.Event) is set, reconnecting by itself."""

    def check(self) -> None:
        """Raise when the broker cannot be reached."""

    def close(self) -> None: ...
