"""Test support for the alerts service: events in, and the payloads of those events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.helpers import auth

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
