"""What the RabbitMQ modules share: connection parameters, message properties, error text."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Sequence
from typing import Any

import pika

from shared.messaging.base import PublishError

PERSISTENT = 2


class BrokerUnavailable(ConnectionError):
    """RabbitMQ cannot be reached."""


def broker_urls(url: str) -> list[str]:
    """The broker addresses in `HAI_AMQP_URL`: one URL, or a cluster's nodes separated by commas."""
    urls = [part.strip() for part in url.split(",") if part.strip()]
    if not urls:
        raise ValueError("no broker URL")
    return urls


class Nodes:
    """A cluster's addresses in the order to try them: the one that answered last comes first,
    one that failed goes after the others (so a dead or frozen node is not waited for twice).
    Each process starts at a node of its own choosing: the clients spread over the cluster, and
    a node lost takes only its share of the connections with it."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.urls = list(urls)
        self._first = random.randrange(len(self.urls))
        self._lock = threading.Lock()

    def in_order(self) -> list[str]:
        with self._lock:
            first = self._first
        return self.urls[first:] + self.urls[:first]

    def answered(self, url: str) -> None:
        with self._lock:
            self._first = self.urls.index(url)

    def failed(self, url: str) -> None:
        with self._lock:
            if self.urls[self._first] == url:
                self._first = (self._first + 1) % len(self.urls)


def connection_parameters(url: str, purpose: str, *, heartbeat_seconds: int,
                          connect_timeout: float) -> pika.URLParameters:
    """Parameters from the URL, with our heartbeat, timeouts and a readable connection name."""
    params = pika.URLParameters(url)
    params.heartbeat = heartbeat_seconds
    params.blocked_connection_timeout = 60
    params.socket_timeout = connect_timeout
    params.stack_timeout = connect_timeout
    params.connection_attempts = 1
    # the pid tells which process holds a connection (`rabbitmqctl list_connections
    # client_properties`): the cluster fault tests kill the node that a given process is on
    params.client_properties = {"connection_name": f"hai {purpose}",
                                "hai_pid": str(os.getpid())}
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
