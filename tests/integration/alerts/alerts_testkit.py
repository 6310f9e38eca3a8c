"""Test support for the alerts service: events in, and the payloads of those events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shared.events import EVENTS_EXCHANGE, CloudEvent
from shared.messaging.base import OutgoingMessage
from shared.messaging.inproc import InProcessBus
from tests import helpers
from tests.helpers import Harness, auth, deliver

T0 = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
ONCALL = auth("oncall", sub="oncall-olga")
NURSE = auth("nurse", sub="nurse-nina")


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
    """Poll until `predicate` holds; fail naming what was awaited (tests.helpers.wait_until)."""
    helpers.wait_until(predicate, what=what, timeout_s=timeout)
