"""What every change of an alert leaves behind: its timeline entry, and its event payload."""

from __future__ import annotations

from typing import Any

from services.alerts.models import Alert, AlertEvent
from services.alerts.schemas import AlertRead
from shared.db import UnitOfWork


def timeline(uow: UnitOfWork, alert: Alert, actor: str, action: str,
             details: dict[str, Any] | None = None) -> None:
    """Add an entry to an alert's timeline."""
    uow.session.add(AlertEvent(alert_id=alert.id, at=uow.now(), actor=actor, action=action,
                               details=details or {}))


def alert_data(alert: Alert) -> dict[str, Any]:
    """The alert as its events carry it."""
    return AlertRead.model_validate(alert).model_dump(mode="json")
