"""Appointments: scheduling the next fill of a therapy, the worklist, booking a time, and the
contract's appointment payload."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select

from services.scheduling.models import Appointment, Therapy
from services.scheduling.schemas import AppointmentBook, AppointmentRead
from shared.clock import ensure_utc
from shared.contracts.scheduling import AppointmentData, AppointmentScheduledData
from shared.contracts.vocabulary import AppointmentStatus, DueBasis, FillType
from shared.db import UnitOfWork, new_id
from shared.errors import Conflict, NotFound
from shared.pagination import Page, PageParams, paginate

A = TypeVar("A", bound=AppointmentData)


def appointment_data(appt: Appointment, event: type[A], **extra: Any) -> A:
    """The appointment as the event `event` (scheduled, due soon, overdue, near empty) carries
    it, with that event's `extra` fields."""
    return event(
        id=appt.id, therapy_id=appt.therapy_id, patient_mrn=appt.patient_mrn, center=appt.center,
        pump_serial=appt.pump_serial, fill_type=appt.fill_type, due_at=appt.due_at,
        scheduled_for=appt.scheduled_for, status=appt.status,
        projected_empty_at=appt.projected_empty_at, delivery_id=appt.delivery_id,
        due_basis=appt.due_basis or DueBasis.INTERVAL, **extra,
    )


def schedule_appointment(uow: UnitOfWork, *, therapy: Therapy, center: str, fill_type: FillType,
                         due_at: datetime, projected_empty_at: datetime | None,
                         due_basis: DueBasis = DueBasis.INTERVAL,
                         announce: bool = True) -> Appointment:
    """Create the next appointment of a therapy and announce it (unless the caller will)."""
    now = uow.now()
    appt = Appointment(
        id=new_id(), therapy_id=therapy.id, patient_mrn=therapy.patient_mrn, center=center,
        pump_serial=therapy.pump_serial, fill_type=fill_type, due_at=due_at, scheduled_for=None,
        status=AppointmentStatus.SCHEDULED, projected_empty_at=projected_empty_at, delivery_id=None,
        due_basis=due_basis, created_at=now, updated_at=now,
    )
    uow.session.add(appt)
    if announce:
        uow.publish(appointment_data(appt, AppointmentScheduledData), subject=appt.pump_serial)
    return appt


def open_appointments(uow: UnitOfWork, *, therapy_id: str) -> list[Appointment]:
    """A therapy's scheduled appointments, earliest first."""
    return list(uow.session.scalars(select(Appointment).where(
        Appointment.therapy_id == therapy_id, Appointment.status == AppointmentStatus.SCHEDULED,
    ).order_by(Appointment.due_at)))


def list_appointments(*, uow: UnitOfWork, page: PageParams, status: str | None,
                      due_before: datetime | None, center: str | None,
                      patient_mrn: str | None) -> Page[AppointmentRead]:
    """The worklist, ordered by due time (every status unless one is asked for)."""
    stmt = select(Appointment)
    if status:
        stmt = stmt.where(Appointment.status == status)
    if due_before is not None:
        stmt = stmt.where(Appointment.due_at < due_before)
    if center:
        stmt = stmt.where(Appointment.center == center)
    if patient_mrn:
        stmt = stmt.where(Appointment.patient_mrn == patient_mrn)
    return paginate(uow.session, stmt, keys=[Appointment.due_at, Appointment.id], params=page,
                    to_item=AppointmentRead.model_validate)


def get_appointment(*, uow: UnitOfWork, appointment_id: str) -> AppointmentRead:
    """One appointment."""
    appt = uow.session.get(Appointment, appointment_id)
    if appt is None:
        raise NotFound(f"no appointment {appointment_id}")
    return AppointmentRead.model_validate(appt)


def book_appointment(*, uow: UnitOfWork, appointment_id: str, body: AppointmentBook,
                     actor: str) -> AppointmentRead:
    """Book the time a scheduled appointment will take place."""
    appt = uow.session.get(Appointment, appointment_id)
    if appt is None:
        raise NotFound(f"no appointment {appointment_id}")
    if appt.status != AppointmentStatus.SCHEDULED:
        raise Conflict(f"appointment is {appt.status}; only a scheduled one can be booked",
                       current_status=appt.status)
    before = appt.scheduled_for
    appt.scheduled_for, appt.updated_at = ensure_utc(body.scheduled_for), uow.now()
    uow.session.flush()
    uow.audit(actor=actor, action="appointment.booked", entity_type="appointment",
              entity_id=appt.id, changes={"before": before, "scheduled_for": body.scheduled_for})
    uow.publish(appointment_data(appt, AppointmentScheduledData), subject=appt.pump_serial)
    return AppointmentRead.model_validate(appt)
