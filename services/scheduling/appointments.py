"""Appointments: scheduling the next fill of a therapy, the worklist, booking a time, the
contract's appointment payload, and an appointment as answered (with its urgency)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select

from services.scheduling.centers import effective_settings
from services.scheduling.models import Appointment, Therapy
from services.scheduling.schemas import AppointmentBook, AppointmentRead
from services.scheduling.settings import SchedulingSettings
from services.scheduling.urgency import is_near_empty, urgency_of
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


def judged(read: AppointmentRead, *, now: datetime,
           settings: SchedulingSettings) -> AppointmentRead:
    """An appointment as the API answers it: with scheduling's urgency and near-empty
    judgements as of `now` when it is scheduled (CONTRACT.md, Scheduling: no client re-derives
    them), by its centre's effective `settings`. Events carry the plain appointment, never these."""
    if read.status != AppointmentStatus.SCHEDULED:
        return read
    return read.model_copy(update={
        "urgency": urgency_of(due_at=read.due_at, now=now, due_soon_hours=settings.due_soon_hours,
                              time_zone=settings.time_zone),
        "near_empty": is_near_empty(projected_empty_at=read.projected_empty_at, now=now,
                                    near_empty_hours=settings.near_empty_hours),
    })


def appointment_read(appt: Appointment, *, now: datetime,
                     settings: SchedulingSettings) -> AppointmentRead:
    """One row as answered, judged as of `now`."""
    return judged(AppointmentRead.model_validate(appt), now=now, settings=settings)


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
                      patient_mrn: str | None, settings: SchedulingSettings) -> Page[AppointmentRead]:
    """The worklist, ordered by due time (every status unless one is asked for)."""
    now = uow.now()
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
                    to_item=lambda a: appointment_read(
                        a, now=now, settings=effective_settings(uow, settings, a.center)))


def get_appointment(*, uow: UnitOfWork, appointment_id: str,
                    settings: SchedulingSettings) -> AppointmentRead:
    """One appointment."""
    appt = uow.session.get(Appointment, appointment_id)
    if appt is None:
        raise NotFound(f"no appointment {appointment_id}")
    return appointment_read(appt, now=uow.now(),
                            settings=effective_settings(uow, settings, appt.center))


def book_appointment(*, uow: UnitOfWork, appointment_id: str, body: AppointmentBook,
                     actor: str, settings: SchedulingSettings) -> AppointmentRead:
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
    return appointment_read(appt, now=uow.now(),
                            settings=effective_settings(uow, settings, appt.center))
