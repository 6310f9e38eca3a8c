"""What every change of an alert leaves behind: its timeline entry, and its event payload."""

from __future__ import annotations

from typing import Any, TypeVar

from services.alerts.models import Alert, AlertEvent
from services.alerts.schemas import AlertRead
from shared.contracts.alerts import AlertData
from shared.db import UnitOfWork

A = TypeVar("A", bound=AlertData)


def timeline(uow: UnitOfWork, alert: Alert, actor: str, action: str,
             details: dict[str, Any] | None = None) -> None:
    """Add an entry to an alert's timeline."""
    uow.session.add(AlertEvent(alert_id=alert.id, at=uow.now(), actor=actor, action=action,
                               details=details or {}))


def alert_json(alert: Alert) -> dict[str, Any]:
    """The alert as the API reads it, in JSON."""
    return AlertRead.model_validate(alert).model_dump(mode="json")


def alert_data(alert: Alert, event: type[A]) -> A:
    """The alert as the event `event` (raised, acknowledged, resolved) carries it: every field
    of the alert as the API reads it."""
    return event.model_validate(alert_json(alert))
