"""Events alerts publishes (CONTRACT.md, Alerts and Events)."""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict

from shared.contracts.vocabulary import AlertKind, AlertStatus, NotificationStatus, Severity


class AlertData(BaseModel):
    """An alert, as `hai.alerts.alert.raised` / `.acknowledged` / `.resolved` carry it."""

    model_config = ConfigDict(extra="allow")

    id: str
    kind: AlertKind
    severity: Severity
    status: AlertStatus
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
    """A notification (a page), as `hai.alerts.page.sent` / `.failed` carry it."""

    model_config = ConfigDict(extra="allow")

    id: str
    alert_id: str
    level: int
    channel: str
    recipient: str
    status: NotificationStatus
    attempts: int
    sent_at: AwareDatetime | None = None
    error: str | None = None
    center: str | None = None  # added: the alert's centre


class AlertRaisedData(AlertData):
    """`hai.alerts.alert.raised`: an alert raised, or raised again (`occurrences` counts)."""


class AlertAcknowledgedData(AlertData):
    """`hai.alerts.alert.acknowledged`."""


class AlertResolvedData(AlertData):
    """`hai.alerts.alert.resolved`: by a person, or by the condition clearing."""


class PageSentData(NotificationData):
    """`hai.alerts.page.sent`."""


class PageFailedData(NotificationData):
    """`hai.alerts.page.failed`: every attempt failed; the next level is paged."""
