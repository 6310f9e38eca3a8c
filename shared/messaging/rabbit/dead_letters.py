"""Dead-letter administration (`hai dlq list`, `hai dlq replay`): read a queue's DLQ, move its
letters back to the queue once the cause is fixed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.messaging.base import (
    HEADER_ATTEMPTS,
    HEADER_DLQ_REASON,
    HEADER_ERROR,
    HEADER_ORIGINAL_EXCHANGE,
    HEADER_ORIGINAL_QUEUE,
    HEADER_ORIGINAL_ROUTING_KEY,
    Delivery,
)
from shared.messaging.rabbit.connection import close_quietly, copy_properties

# headers the broker writes when it dead-letters or redelivers; a replayed message starts afresh
_BROKER_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue",
                   "x-first-death-reason", "x-delivery-count")


class DeadLetters:
    """The dead letters of the queues of one broker; `connect(purpose)` opens a
    BlockingConnection (RabbitBus.connect)."""

    def __init__(self, connect: Callable[[str], Any]) -> None:
        self._connect = connect

    def peek(self, queue_name: str, limit: int = 100) -> list[Delivery]:
        """Up to `limit` dead letters of a queue (its name or its `.dlq`'s); they stay there."""
        dlq = queue_name if queue_name.endswith(".dlq") else f"{queue_name}.dlq"
        conn = self._connect("dlq-peek")
        try:
            channel = conn.channel()
            found: list[Delivery] = []
            # unacked gets are not handed out twice; closing the channel puts them all back
            while len(found) < limit:
                method, props, body = channel.basic_get(dlq, auto_ack=False)
                if method is None:
                    break
                headers = dict(props.headers or {})
                exchange, routing_key = _first_routing(headers, method.exchange,
                                                       method.routing_key)
                found.append(Delivery(
                    body=body, routing_key=routing_key, exchange=exchange,
                    message_id=props.message_id, headers=headers,
                    redelivered=method.redelivered, tag=method.delivery_tag,
                ))
            return found
        finally:
            close_quietly(conn)

    def replay(self, queue_name: str, message_id: str | None = None) -> int:
        """Move dead letters (all, or the one with this message id) back to their queue;
        returns how many moved."""
        name = queue_name.removesuffix(".dlq")
        dlq = f"{name}.dlq"
        conn = self._connect("dlq-replay")
        moved = 0
        try:
            channel = conn.channel()
            publish = conn.channel()
            publish.confirm_delivery()
            # bounded by what is there now: a replayed message failing again must not loop
            count = channel.queue_declare(dlq, passive=True).method.message_count
            for _ in range(count):
                method, props, body = channel.basic_get(dlq, auto_ack=False)
                if method is None:
                    break
                if message_id is not None and props.message_id != message_id:
                    continue  # held unacked: returns to the DLQ when the channel closes
                headers = {k: v for k, v in (props.headers or {}).items()
                           if k not in _BROKER_HEADERS
                           and k not in (HEADER_DLQ_REASON, HEADER_ERROR, HEADER_ORIGINAL_QUEUE)}
                headers[HEADER_ATTEMPTS] = 0
                publish.basic_publish(
                    "", name, body, copy_properties(props, headers), mandatory=True)
                channel.basic_ack(method.delivery_tag)
                moved += 1
            return moved
        finally:
            close_quietly(conn)


def _first_routing(headers: dict[str, Any], exchange: str, routing_key: str) -> tuple[str, str]:
    """Where a dead letter was first routed, as the in-process bus keeps it."""
    if HEADER_ORIGINAL_ROUTING_KEY in headers:
        return (str(headers.get(HEADER_ORIGINAL_EXCHANGE, exchange)),
                str(headers[HEADER_ORIGINAL_ROUTING_KEY]))
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[-1], dict):
        # dead-lettered by the broker itself (e.g. the pharmacy system's reject): the oldest
        # entry is last and holds the first exchange and routing keys
        first = deaths[-1]
        keys = first.get("routing-keys") or [routing_key]
        return str(first.get("exchange", exchange)), str(keys[0])
    return exchange, routing_key
