"""Payload builders and a bulk outbox write for the sweeps (one statement for many events)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.scheduling.models import Appointment
from shared.contracts.scheduling import AppointmentData
from shared.db import UnitOfWork
from shared.events import EVENTS_EXCHANGE


def appointment_data(appt: Appointment) -> AppointmentData:
    """The contract's appointment payload of one row."""
    return AppointmentData(
        id=appt.id, therapy_id=appt.therapy_id, patient_mrn=appt.patient_mrn, center=appt.center,
        pump_serial=appt.pump_serial, fill_type=appt.fill_type, due_at=appt.due_at,
        scheduled_for=appt.scheduled_for, status=appt.status,
        projected_empty_at=appt.projected_empty_at, delivery_id=appt.delivery_id,
        due_basis=appt.due_basis or "interval",
    )


def publish_many(uow: UnitOfWork, events: Sequence[tuple[str, Any, str | None]],
                 *, exchange: str = EVENTS_EXCHANGE) -> int:
    """Write many (type, data, subject) events to the outbox in one statement."""
    return uow.publish_many(events, exchange=exchange)
