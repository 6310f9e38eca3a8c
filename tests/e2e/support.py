"""Test doubles for what lies outside the system: a webhook receiver and a pharmacy on the queue."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pika

from shared.events import CloudEvent, EventType


class WebhookReceiver:
    """A real HTTP server that records every page posted to it, by path."""

    def __init__(self, fail_paths: dict[str, int] | None = None) -> None:
        self.pages: list[tuple[str, dict[str, Any], float]] = []
        self.fail_paths = dict(fail_paths or {})
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    left = receiver.fail_paths.get(self.path, 0)
                    if left:
                        receiver.fail_paths[self.path] = left - 1
                        self.send_response(503)
                        self.end_headers()
                        return
                    receiver.pages.append((self.path, json.loads(body), time.monotonic()))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def on(self, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for p, body, _ in self.pages if p == path]

    def close(self) -> None:
        self.server.shutdown()


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30, every: float = 0.2) -> Any:
    """Poll until `probe()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as exc:  # noqa: BLE001 - keep polling; report the last error
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


class PharmacySimulator:
    """The pharmacy system: reads orders from `pharmacy.orders`, publishes statuses back."""

    def __init__(self, amqp_url: str) -> None:
        self.params = pika.URLParameters(amqp_url)
        self.orders: list[dict[str, Any]] = []

    def fetch_orders(self, timeout: float = 30) -> list[dict[str, Any]]:
        """Take every order waiting in the queue (at least one, within timeout)."""
        deadline = time.monotonic() + timeout
        conn = pika.BlockingConnection(self.params)
        try:
            ch = conn.channel()
            got: list[dict[str, Any]] = []
            while time.monotonic() < deadline:
                method, props, body = ch.basic_get("pharmacy.orders")
                if method is None:
                    if got:
                        break
                    time.sleep(0.2)
                    continue
                got.append(json.loads(body))
                ch.basic_ack(method.delivery_tag)
            self.orders.extend(got)
            return got
        finally:
            conn.close()

    def send_status(self, order_id: str, status: str, *, reason: str | None = None,
                    raw: bytes | None = None, event_id: str | None = None,
                    lot: str | None = None, beyond_use_at: datetime | None = None) -> str:
        """Publish `hai.pharmacy.order.status` (or raw bytes) to hai.pharmacy; returns the id."""
        data: dict[str, Any] = {"order_id": order_id, "status": status,
                                "at": datetime.now(UTC).isoformat()}
        if reason:
            data["reason"] = reason
        if lot:
            data["lot"] = lot
        if beyond_use_at:
            data["beyond_use_at"] = beyond_use_at.isoformat()
        event = CloudEvent.create(source="/pharmacy/sim", type=EventType.ORDER_STATUS, data=data,
                                  subject=order_id, id=event_id)
        body = raw if raw is not None else event.to_json_bytes()
        conn = pika.BlockingConnection(self.params)
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            ch.basic_publish("hai.pharmacy", EventType.ORDER_STATUS, body, pika.BasicProperties(
                content_type="application/cloudevents+json", delivery_mode=2, message_id=event.id))
        finally:
            conn.close()
        return event.id


class EventTap:
    """A queue of the test's own on `hai.events`, bound to some event types: what the other
    services hear, read back from the broker."""

    def __init__(self, amqp_url: str, *routing_keys: str) -> None:
        self.conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
        self.ch = self.conn.channel()
        self.queue = self.ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
        for key in routing_keys:
            self.ch.queue_bind(self.queue, "hai.events", routing_key=key)
        self.seen: list[dict[str, Any]] = []

    def take(self) -> list[dict[str, Any]]:
        """Everything heard so far (the events are kept, oldest first)."""
        while True:
            method, _props, body = self.ch.basic_get(self.queue, auto_ack=True)
            if method is None:
                return self.seen
            self.seen.append(json.loads(body))

    def close(self) -> None:
        if self.conn.is_open:
            self.conn.close()
