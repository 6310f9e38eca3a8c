"""The broker's topology: our exchanges, and each queue with its retry and dead-letter queues."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from shared.events import EVENTS_EXCHANGE, PHARMACY_EXCHANGE
from shared.messaging.base import DLX_EXCHANGE, RETRY_EXCHANGE, QueueSpec

EXCHANGE_TYPES: dict[str, str] = {
    EVENTS_EXCHANGE: "topic",
    PHARMACY_EXCHANGE: "topic",
    DLX_EXCHANGE: "direct",
    RETRY_EXCHANGE: "direct",
}


def queue_arguments(spec: QueueSpec) -> dict[str, Any]:
    """The main queue's arguments: quorum, and what the broker itself rejects goes to the DLQ."""
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": DLX_EXCHANGE,
        "x-dead-letter-routing-key": spec.name,
    }


def retry_queue_arguments(spec: QueueSpec, retry_delay_ms: int) -> dict[str, Any]:
    """The retry queue's arguments: hold each message for the delay, then back to its queue."""
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": retry_delay_ms,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": spec.name,
        # at-most-once (the default) could drop a retried message if the main queue were
        # unavailable at expiry; at-least-once keeps it in the retry queue until it lands
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def _declare_exchange(channel: Any, *, name: str, kind: str) -> None:
    channel.exchange_declare(name, exchange_type=kind, durable=True)


def _declare_queue(channel: Any, *, name: str, arguments: dict[str, Any],
                   bindings: Sequence[tuple[str, str]],
                   retired: Sequence[tuple[str, str]] = ()) -> None:
    channel.queue_declare(name, durable=True, arguments=arguments)
    for exchange, key in bindings:
        channel.queue_bind(name, exchange, routing_key=key)
    for exchange, key in retired:  # unbinding a binding that is not there is not an error
        channel.queue_unbind(name, exchange, routing_key=key)


def topology(queues: Sequence[QueueSpec],
             retry_delay_ms: int) -> list[tuple[str, Callable[[Any], None]]]:
    """The declarations for these queues, in order, each as (what, declare(channel))."""
    exchanges = dict(EXCHANGE_TYPES)
    for spec in queues:
        for exchange, _ in spec.bindings:
            exchanges.setdefault(exchange, "topic")
    steps: list[tuple[str, Callable[[Any], None]]] = [
        (f"exchange {name}", partial(_declare_exchange, name=name, kind=kind))
        for name, kind in exchanges.items()
    ]
    for spec in queues:
        steps += [
            (f"queue {spec.name}", partial(_declare_queue, name=spec.name,
                                           arguments=queue_arguments(spec),
                                           bindings=spec.bindings,
                                           retired=spec.retired_bindings)),
            (f"queue {spec.dlq}", partial(_declare_queue, name=spec.dlq,
                                          arguments={"x-queue-type": "quorum"},
                                          bindings=((DLX_EXCHANGE, spec.name),))),
            (f"queue {spec.retry_queue}", partial(
                _declare_queue, name=spec.retry_queue,
                arguments=retry_queue_arguments(spec, retry_delay_ms),
                bindings=((RETRY_EXCHANGE, spec.name),))),
        ]
    return steps
