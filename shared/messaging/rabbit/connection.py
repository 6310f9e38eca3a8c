"""What the RabbitMQ modules share: connection parameters, message properties, error text."""

from __future__ import annotations

from typing import Any

import pika

from shared.messaging.base import PublishError

PERSISTENT = 2


class BrokerUnavailable(ConnectionError):
    """RabbitMQ cannot be reached."""


def connection_parameters(url: str, purpose: str, *, heartbeat_seconds: int,
                          connect_timeout: float) -> pika.URLParameters:
    """Parameters from the URL, with our heartbeat, timeouts and a readable connection name."""
    params = pika.URLParameters(url)
    params.heartbeat = heartbeat_seconds
    params.blocked_connection_timeout = 60
    params.socket_timeout = connect_timeout
    params.stack_timeout = connect_timeout
    params.connection_attempts = 1
    params.client_properties = {"connection_name": f"hai {purpose}"}
    return params


def close_quietly(connection: Any) -> None:
    try:
        if connection is not None and connection.is_open:
            connection.close()
    except Exception:  # noqa: BLE001 - the connection is already broken; nothing to save
        pass


def short(exc: BaseException) -> str:
    """An exception as one bounded line for a log or a PublishError."""
    if isinstance(exc, PublishError):
        return str(exc)[:500]
    text = str(exc)
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:500]


def copy_properties(props: Any, headers: dict[str, Any],
                    expiration: str | None = None) -> pika.BasicProperties:
    """A received message's properties for its copy (retry, dead letter, replay), persistent."""
    return pika.BasicProperties(
        content_type=props.content_type,
        content_encoding=props.content_encoding,
        delivery_mode=PERSISTENT,
        message_id=props.message_id,
        correlation_id=props.correlation_id,
        timestamp=props.timestamp,
        type=props.type,
        app_id=props.app_id,
        headers=headers,
        expiration=expiration,
    )
