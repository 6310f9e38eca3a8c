"""Events alerts publishes (CONTRACT.md, Alerts and Events)."""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict


class AlertData(BaseModel):
    """`hai.alerts.alert.raised` / `.acknowledged` / `.resolved`: the alert."""

    model_config = ConfigDict(extra="allow")

    id: str
    kind: str
    severity: str
    status: str
    dedup_key: str
    patient_mrn: str | None = None
    pump_serial: str | None = None
    center: str | None = None
    summary: str
    details: dict[str, Any] = {}
    first_raised_at: AwareDatetime
    last_raised_at: AwareDatetime
    occurrences: int
    acknowledged_by: str | None = None
    acknowledged_at: AwareDatetime | None = None
    resolved_at: AwareDatetime | None = None
    resolution: str | None = None
    escalation_level: int


class NotificationData(BaseModel):
    """`hai.alerts.page.sent` / `.failed`: the notification."""

    model_config = ConfigDict(extra="allow")

    id: str
    alert_id: str
    level: int
    channel: str
    recipient: str
    status: str
    attempts: int
    sent_at: AwareDatetime | None = None
    error: str | None = None
