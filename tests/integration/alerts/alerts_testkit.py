"""Test support for the alerts service: events in, a real webhook receiver, a real SMTP server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from shared.events import EVENTS_EXCHANGE, CloudEvent
from shared.messaging.base import OutgoingMessage
from shared.messaging.inproc import InProcessBus
from tests.helpers import Harness, auth, deliver

T0 = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
ONCALL = auth("oncall", sub="oncall-olga")
NURSE = auth("nurse", sub="nurse-nina")


class WebhookReceiver:
    """A local HTTP server that records the pages it gets; fails the first `fail_first` posts."""

    def __init__(self, *, fail_first: int = 0, always_fail: bool = False,
                 redirect_to: str | None = None) -> None:
        self.fail_first = fail_first
        self.always_fail = always_fail
        self.redirect_to = redirect_to
        self.pages: list[dict[str, Any]] = []
        # every request as it came: headers and the raw body (to check signatures against)
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.attempts = 0
        self.arrived_at: list[float] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    receiver.attempts += 1
                    receiver.received.append((dict(self.headers.items()), body))
                    failing = receiver.always_fail or receiver.attempts <= receiver.fail_first
                    if not failing and not receiver.redirect_to:
                        receiver.pages.append(json.loads(body))
                        receiver.arrived_at.append(time.perf_counter())
                if receiver.redirect_to:
                    self.send_response(307)
                    self.send_header("location", receiver.redirect_to)
                else:
                    self.send_response(503 if failing else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/page"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def webhook(**kwargs: Any) -> Iterator[WebhookReceiver]:
    """A webhook receiver for the duration of a block."""
    receiver = WebhookReceiver(**kwargs)
    try:
        yield receiver
    finally:
        receiver.close()


def oncall_body(*urls_per_level: list[tuple[str, str, str]], delay_s: int = 900,
                shift_hours: float = 12, rotation_start: str = "2026-11-01T08:00:00Z") -> dict[str, Any]:
    """A PUT /v1/oncall body: one list of (name, channel, address) per level."""
    return {"escalation_delay_seconds": delay_s, "levels": [
        {"members": [{"name": n, "channel": c, "address": a} for n, c, a in members],
         "rotation_start": rotation_start, "shift_hours": shift_hours}
        for members in urls_per_level]}


def emit(h: Harness, bus: InProcessBus, event_type: str, data: dict[str, Any],
         subject: str | None = None) -> CloudEvent:
    """Publish an event as its producer would and let the alerts consumer handle it."""
    event = CloudEvent.create(source="/hai/test", type=event_type, data=data, subject=subject,
                              time=h.runtime.clock.now())
    bus.declare(h.runtime.all_queues())
    bus.publish_batch([OutgoingMessage(message_id=event.id, exchange=EVENTS_EXCHANGE,
                                       routing_key=event_type, body=event.to_json_bytes())])
    outcomes = deliver([h], bus)
    bad = [o for o in outcomes if o.action != "ack"]
    assert not bad, bad
    return event


def flow_data(serial: str = "SN1001", deviation_pct: float = 30.0, *, mrn: str = "MRN-1",
              center: str = "north") -> dict[str, Any]:
    """A `hai.scheduling.flow.recorded` payload."""
    expected = 1.0
    return {"pump_serial": serial, "patient_mrn": mrn, "center": center,
            "measured_flow_ml_per_day": expected * (1 + deviation_pct / 100),
            "expected_flow_ml_per_day": expected, "flow_deviation_pct": deviation_pct,
            "residual_volume_ml": 10.0, "elapsed_days": 14.0, "refill_id": f"refill-{serial}"}


def appointment_data(appt_id: str = "appt-1", serial: str = "SN1001", *, center: str = "north",
                     **extra: Any) -> dict[str, Any]:
    """An appointment payload (due-soon, overdue, near-empty add their fields via `extra`)."""
    return {"id": appt_id, "therapy_id": "th-1", "patient_mrn": "MRN-1", "center": center,
            "pump_serial": serial, "fill_type": "chemo", "due_at": "2026-11-28T00:00:00Z",
            "status": "scheduled", **extra}


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll until `predicate` holds; fail saying what did not happen in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
