"""Scheduling's domain operations: patients, the implanted-pump read model, therapies,
appointments, refills and flow readings (deliveries live in deliveries.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.orm.attributes import set_committed_value

from services.scheduling import deliveries
from services.scheduling.dosing import (
    DosingError,
    dosing_weight_kg,
    hard_limit_problems,
    in_label_range,
)
from services.scheduling.flow import (
    DeliveryFacts,
    PreviousFill,
    chemo_delivery_problem,
    first_fill_type,
    is_outside_window,
    next_due,
    next_fill_type,
    refill_figures,
    refill_problems,
    start_of_day_utc,
)
from services.scheduling.models import (
    ENTERED_IN_ERROR,
    RECORDED,
    Appointment,
    Delivery,
    ImplantedPump,
    Patient,
    Refill,
    Therapy,
)
from services.scheduling.outbox import appointment_data
from services.scheduling.schemas import (
    AppointmentBook,
    AppointmentRead,
    FlowReading,
    PatientCreate,
    PatientRead,
    PatientUpdate,
    RefillCreate,
    RefillRead,
    RefillVoid,
    TherapyCreate,
    TherapyRead,
    TherapyUpdate,
)
from shared.clock import ensure_utc
from shared.contracts.inventory import PumpData, PumpExplantedData, PumpStatusChangedData
from shared.contracts.scheduling import FlowRecordedData, RefillCompletedData, RefillVoidedData
from shared.db import UnitOfWork, is_postgres, new_id
from shared.errors import Conflict, DomainError, Invalid, NotFound
from shared.events import EventType
from shared.pagination import Page, PageParams, paginate
from shared.settings import Settings

log = structlog.get_logger(__name__)

OPEN_THERAPY = ("active", "paused")


# ---------------------------------------------------------------- patients

def create_patient(*, uow: UnitOfWork, body: PatientCreate, actor: str) -> PatientRead:
    """Register a patient; 409 when the MRN is known."""
    if uow.session.get(Patient, body.mrn) is not None:
        raise Conflict("a patient with this MRN already exists")
    now = uow.now()
    patient = Patient(**body.model_dump(), created_at=now, updated_at=now)
    uow.session.add(patient)
    uow.session.flush()
    uow.audit(actor=actor, action="patient.created", entity_type="patient", entity_id=body.mrn,
              changes=body.model_dump(mode="json"))
    return PatientRead.model_validate(patient)


def get_patient_or_raise(*, uow: UnitOfWork, mrn: str) -> Patient:
    """The patient, or 404."""
    patient = uow.session.get(Patient, mrn)
    if patient is None:
        raise NotFound("no patient with this MRN")
    return patient


def get_patient(*, uow: UnitOfWork, mrn: str) -> PatientRead:
    """One patient."""
    return PatientRead.model_validate(get_patient_or_raise(uow=uow, mrn=mrn))


def update_patient(*, uow: UnitOfWork, mrn: str, body: PatientUpdate, actor: str) -> PatientRead:
    """Change a patient's details (e.g. a new weight: the next order's dose follows it)."""
    patient = get_patient_or_raise(uow=uow, mrn=mrn)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    before = {k: getattr(patient, k) for k in changes}
    for key, value in changes.items():
        setattr(patient, key, value)
    patient.updated_at = uow.now()
    uow.session.flush()
    uow.audit(actor=actor, action="patient.updated", entity_type="patient", entity_id=mrn,
              changes={"before": before, "after": changes})
    return PatientRead.model_validate(patient)


# ---------------------------------------------------------------- implanted-pump read model

def on_pump_implanted(uow: UnitOfWork, data: PumpData) -> None:
    """Learn (or refresh) an implanted pump from inventory's event."""
    pump = uow.session.get(ImplantedPump, data.serial_number)
    if (pump is not None and pump.implanted_at is not None and data.implanted_at is not None
            and data.implanted_at < pump.implanted_at):
        return  # an older implant than the one we know: out of order
    if pump is None:
        pump = ImplantedPump(serial_number=data.serial_number)
        uow.session.add(pump)
    pump.patient_mrn = data.patient_mrn
    pump.center = data.center
    pump.model_code = data.model_code
    pump.reservoir_ml = data.reservoir_ml
    pump.labeled_flow_ml_per_day = data.labeled_flow_ml_per_day
    pump.status = "implanted"
    pump.implanted_at = data.implanted_at
    pump.explanted_at = None
    pump.updated_at = uow.now()
    uow.session.flush()
    log.info("pump.implanted_learnt", pump_serial=data.serial_number)


def on_pump_explanted(uow: UnitOfWork, data: PumpExplantedData, *, settings: Settings) -> None:
    """Forget an explanted pump: its open therapies stop (their appointments and orders go)."""
    pump = uow.session.get(ImplantedPump, data.serial_number)
    if pump is None:
        return
    if pump.implanted_at is not None and data.explanted_at < pump.implanted_at:
        return  # the explant of an earlier implant, arriving late
    pump.status = "explanted"
    pump.explanted_at = data.explanted_at
    pump.updated_at = uow.now()
    therapies = uow.session.scalars(select(Therapy).where(
        Therapy.pump_serial == data.serial_number, Therapy.status.in_(OPEN_THERAPY))).all()
    for therapy in therapies:
        _stop_therapy(uow, therapy, actor="inventory", reason="pump explanted", settings=settings)
    uow.session.flush()
    log.info("pump.explanted_learnt", pump_serial=data.serial_number, therapies_stopped=len(therapies))


def on_pump_status_changed(uow: UnitOfWork, data: PumpStatusChangedData) -> None:
    """Keep the read model's status in step (only for pumps scheduling knows)."""
    pump = uow.session.get(ImplantedPump, data.serial_number)
    if pump is None or data.to_status in ("implanted", "explanted"):
        return  # implant and explant come with their own events and details
    pump.status = data.to_status
    pump.updated_at = uow.now()


# ---------------------------------------------------------------- therapies

def _validate_dosing(therapy: Therapy, patient: Patient, pump: ImplantedPump,
                     settings: Settings) -> None:
    hard = hard_limit_problems(fudr_mg_per_kg_day=therapy.fudr_mg_per_kg_day,
                               dexamethasone_mg=therapy.dexamethasone_mg,
                               heparin_units=therapy.heparin_units,
                               limits=deliveries.hard_limits(settings))
    if hard:
        raise _invalid(hard)
    if therapy.fill_volume_ml is not None and therapy.fill_volume_ml > pump.reservoir_ml:
        raise Invalid("fill_volume_ml", f"{therapy.fill_volume_ml} mL is above the pump's "
                                        f"reservoir of {pump.reservoir_ml} mL")
    if therapy.regimen != "fudr_alternating":
        return
    dose = therapy.fudr_mg_per_kg_day
    assert dose is not None
    if not in_label_range(dose, minimum=settings.fudr_label_min_mg_per_kg_day,
                          maximum=settings.fudr_label_max_mg_per_kg_day) \
            and not therapy.dose_override_reason:
        raise Invalid("fudr_mg_per_kg_day",
                      f"{dose} mg/kg/day is outside the label range "
                      f"{settings.fudr_label_min_mg_per_kg_day}–{settings.fudr_label_max_mg_per_kg_day}"
                      " mg/kg/day; an oncologist's dose_override_reason is required")
    try:
        dosing_weight_kg(actual_kg=patient.weight_kg, mode=therapy.dosing_weight,
                         height_cm=patient.height_cm, sex=patient.sex,
                         adjusted_threshold_pct=settings.adjusted_weight_threshold_pct)
    except DosingError as exc:
        raise Invalid(exc.field, exc.message) from exc


def create_therapy(*, uow: UnitOfWork, body: TherapyCreate, actor: str,
                   settings: Settings) -> TherapyRead:
    """Start a therapy on a pump scheduling has seen implanted in that patient; schedule its first fill."""
    session = uow.session
    patient = session.get(Patient, body.patient_mrn)
    if patient is None:
        raise Invalid("patient_mrn", "no patient with this MRN")
    pump = session.get(ImplantedPump, body.pump_serial)
    if pump is None or pump.status != "implanted" or pump.patient_mrn != body.patient_mrn:
        known = "unknown to scheduling" if pump is None else (
            pump.status if pump.patient_mrn == body.patient_mrn else f"{pump.status} in another patient")
        raise Conflict(f"scheduling has not seen pump {body.pump_serial} implanted in this patient "
                       f"(current state: {known})", current_status=known)
    open_one = session.scalar(select(Therapy).where(
        Therapy.pump_serial == body.pump_serial, Therapy.status.in_(OPEN_THERAPY)))
    if open_one is not None:
        raise Conflict(f"pump {body.pump_serial} already has therapy {open_one.id} "
                       f"(status {open_one.status})", current_status=open_one.status)
    now = uow.now()
    dose = body.fudr_mg_per_kg_day
    if body.regimen == "fudr_alternating" and dose is None:
        dose = settings.fudr_default_mg_per_kg_day
    therapy = Therapy(
        id=new_id(), patient_mrn=body.patient_mrn, pump_serial=body.pump_serial,
        regimen=body.regimen, status="active", start_on=body.start_on,
        refill_interval_days=body.refill_interval_days or settings.refill_interval_days,
        fudr_mg_per_kg_day=dose, dosing_weight=body.dosing_weight,
        dexamethasone_mg=body.dexamethasone_mg, heparin_units=body.heparin_units,
        fill_volume_ml=body.fill_volume_ml,
        dose_override_by=actor if body.dose_override_reason else None,
        dose_override_reason=body.dose_override_reason,
        created_by=actor, created_at=now, updated_at=now,
    )
    _validate_dosing(therapy, patient, pump, settings)
    session.add(therapy)
    session.flush()
    uow.audit(actor=actor, action="therapy.created", entity_type="therapy", entity_id=therapy.id,
              changes=body.model_dump(mode="json"))
    appt = schedule_appointment(uow, therapy=therapy, center=patient.center,
                                fill_type=first_fill_type(therapy.regimen),
                                due_at=start_of_day_utc(body.start_on), projected_empty_at=None)
    deliveries.place_order_if_due(uow, appt, settings=settings, actor=actor)
    return TherapyRead.model_validate(therapy)


def get_therapy_or_raise(*, uow: UnitOfWork, therapy_id: str) -> Therapy:
    """The therapy, or 404."""
    therapy = uow.session.get(Therapy, therapy_id)
    if therapy is None:
        raise NotFound(f"no therapy {therapy_id}")
    return therapy


def get_therapy(*, uow: UnitOfWork, therapy_id: str) -> TherapyRead:
    """One therapy."""
    return TherapyRead.model_validate(get_therapy_or_raise(uow=uow, therapy_id=therapy_id))


def list_therapies(*, uow: UnitOfWork, page: PageParams, patient_mrn: str | None,
                   status: str | None) -> Page[TherapyRead]:
    """Therapies, newest first, optionally of one patient or status."""
    stmt = select(Therapy)
    if patient_mrn:
        stmt = stmt.where(Therapy.patient_mrn == patient_mrn)
    if status:
        stmt = stmt.where(Therapy.status == status)
    return paginate(uow.session, stmt, keys=[Therapy.created_at, Therapy.id], params=page,
                    to_item=TherapyRead.model_validate, descending=True)


def update_therapy(*, uow: UnitOfWork, therapy_id: str, body: TherapyUpdate, actor: str,
                   settings: Settings) -> TherapyRead:
    """Pause, resume or stop a therapy, and/or change its dosing settings."""
    therapy = get_therapy_or_raise(uow=uow, therapy_id=therapy_id)
    if therapy.status == "stopped":
        raise Conflict("therapy is stopped; start a new one", current_status="stopped")
    settings_changes = body.model_dump(exclude_unset=True, exclude_none=True,
                                       exclude={"action", "reason"})
    if settings_changes:
        before = {k: getattr(therapy, k) for k in settings_changes}
        for key, value in settings_changes.items():
            setattr(therapy, key, value)
        if "dose_override_reason" in settings_changes:
            therapy.dose_override_by = actor
        patient = get_patient_or_raise(uow=uow, mrn=therapy.patient_mrn)
        pump = uow.session.get(ImplantedPump, therapy.pump_serial)
        if pump is not None:
            _validate_dosing(therapy, patient, pump, settings)
        uow.audit(actor=actor, action="therapy.settings_changed", entity_type="therapy",
                  entity_id=therapy.id, changes={"before": before, "after": settings_changes})
    if body.action == "pause":
        if therapy.status != "active":
            raise Conflict(f"therapy is {therapy.status}; only an active therapy pauses",
                           current_status=therapy.status)
        therapy.status, therapy.status_reason = "paused", body.reason
        deliveries.cancel_open_orders(uow, therapy_id=therapy.id, actor=actor,
                                      reason=body.reason or "therapy paused")
        uow.audit(actor=actor, action="therapy.paused", entity_type="therapy",
                  entity_id=therapy.id, changes={"reason": body.reason})
    elif body.action == "resume":
        if therapy.status != "paused":
            raise Conflict(f"therapy is {therapy.status}; only a paused therapy resumes",
                           current_status=therapy.status)
        therapy.status, therapy.status_reason = "active", body.reason
        uow.audit(actor=actor, action="therapy.resumed", entity_type="therapy",
                  entity_id=therapy.id, changes={"reason": body.reason})
    elif body.action == "stop":
        _stop_therapy(uow, therapy, actor=actor, reason=body.reason, settings=settings)
    therapy.updated_at = uow.now()
    uow.session.flush()
    if therapy.status == "active":
        for appt in open_appointments(uow, therapy_id=therapy.id):
            deliveries.place_order_if_due(uow, appt, settings=settings, actor=actor)
    return TherapyRead.model_validate(therapy)


def _stop_therapy(uow: UnitOfWork, therapy: Therapy, *, actor: str, reason: str | None,
                  settings: Settings) -> None:
    now = uow.now()
    therapy.status, therapy.status_reason, therapy.updated_at = "stopped", reason, now
    cancelled = []
    for appt in open_appointments(uow, therapy_id=therapy.id):
        appt.status, appt.updated_at = "cancelled", now
        cancelled.append(appt.id)
    uow.session.flush()
    deliveries.cancel_open_orders(uow, therapy_id=therapy.id, actor=actor,
                                  reason=reason or "therapy stopped")
    uow.audit(actor=actor, action="therapy.stopped", entity_type="therapy", entity_id=therapy.id,
              changes={"reason": reason, "cancelled_appointments": cancelled})


# ---------------------------------------------------------------- appointments

def schedule_appointment(uow: UnitOfWork, *, therapy: Therapy, center: str, fill_type: str,
                         due_at: datetime, projected_empty_at: datetime | None,
                         due_basis: str = "interval", announce: bool = True) -> Appointment:
    """Create the next appointment of a therapy and announce it (unless the caller will)."""
    now = uow.now()
    appt = Appointment(
        id=new_id(), therapy_id=therapy.id, patient_mrn=therapy.patient_mrn, center=center,
        pump_serial=therapy.pump_serial, fill_type=fill_type, due_at=due_at, scheduled_for=None,
        status="scheduled", projected_empty_at=projected_empty_at, delivery_id=None,
        due_basis=due_basis, created_at=now, updated_at=now,
    )
    uow.session.add(appt)
    if announce:
        uow.publish(EventType.APPOINTMENT_SCHEDULED, appointment_data(appt),
                    subject=appt.pump_serial)
    return appt


def open_appointments(uow: UnitOfWork, *, therapy_id: str) -> list[Appointment]:
    """A therapy's scheduled appointments, earliest first."""
    return list(uow.session.scalars(select(Appointment).where(
        Appointment.therapy_id == therapy_id, Appointment.status == "scheduled",
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
    if appt.status != "scheduled":
        raise Conflict(f"appointment is {appt.status}; only a scheduled one can be booked",
                       current_status=appt.status)
    before = appt.scheduled_for
    appt.scheduled_for, appt.updated_at = ensure_utc(body.scheduled_for), uow.now()
    uow.session.flush()
    uow.audit(actor=actor, action="appointment.booked", entity_type="appointment",
              entity_id=appt.id, changes={"before": before, "scheduled_for": body.scheduled_for})
    uow.publish(EventType.APPOINTMENT_SCHEDULED, appointment_data(appt), subject=appt.pump_serial)
    return AppointmentRead.model_validate(appt)


# ---------------------------------------------------------------- refills

def _previous_fill(uow: UnitOfWork, pump: ImplantedPump) -> PreviousFill | None:
    """When the pump was last filled since its implant, with how much, and by which refill."""
    stmt = select(Refill.performed_at, Refill.fill_volume_ml, Refill.id).where(
        Refill.pump_serial == pump.serial_number, Refill.status == RECORDED)
    if pump.implanted_at is not None:
        stmt = stmt.where(Refill.performed_at >= pump.implanted_at)
    row = uow.session.execute(
        stmt.order_by(Refill.performed_at.desc(), Refill.id.desc()).limit(1)).first()
    return PreviousFill(row[0], row[1], row[2]) if row is not None else None


def _invalid(problems: list[tuple[str, str]]) -> DomainError:
    field, message = problems[0]
    exc = Invalid(field, message)
    exc.errors = [{"field": f, "message": m} for f, m in problems]
    exc.detail = "; ".join(f"{f}: {m}" for f, m in problems)
    return exc


def _chemo_delivery(uow: UnitOfWork, body: RefillCreate, appt: Appointment | None,
                    therapy: Therapy, now: datetime) -> Delivery | str:
    """The delivery a chemo fill uses (locked), or why it may not use it."""
    d = deliveries.lock_for_fill(uow, body.delivery_id) if body.delivery_id else None
    facts = None if d is None else DeliveryFacts(
        id=d.id, appointment_id=d.appointment_id, patient_mrn=d.patient_mrn, status=d.status,
        beyond_use_at=d.beyond_use_at)
    problem = chemo_delivery_problem(
        delivery_id=body.delivery_id, delivery=facts,
        appointment_id=appt.id if appt is not None else None,
        patient_mrn=therapy.patient_mrn, performed_at=body.performed_at, now=now)
    if problem is not None:
        return problem
    assert d is not None
    return d


def record_refill(*, uow: UnitOfWork, body: RefillCreate, actor: str,
                  settings: Settings) -> RefillRead:
    """Record a refill: its flow figures, the appointment it completes and the next one."""
    session = uow.session
    now = uow.now()
    body = body.model_copy(update={"performed_at": ensure_utc(body.performed_at)})
    pump = session.get(ImplantedPump, body.pump_serial)
    if pump is None:
        raise NotFound(f"scheduling knows no implanted pump {body.pump_serial}")
    if pump.status != "implanted":
        raise Conflict(f"pump {body.pump_serial} is {pump.status}", current_status=pump.status)
    therapy = session.scalar(select(Therapy).where(
        Therapy.pump_serial == pump.serial_number, Therapy.status.in_(OPEN_THERAPY)))
    if therapy is None:
        raise Conflict(f"pump {body.pump_serial} has no active therapy", current_status="none")
    appt: Appointment | None
    if body.appointment_id:
        appt = session.get(Appointment, body.appointment_id)
        if appt is None or appt.pump_serial != pump.serial_number:
            raise Invalid("appointment_id", "no such appointment for this pump")
        if appt.status != "scheduled":
            raise Conflict(f"appointment is {appt.status}", current_status=appt.status)
    else:
        appt = session.scalar(select(Appointment).where(
            Appointment.pump_serial == pump.serial_number, Appointment.status == "scheduled",
        ).order_by(Appointment.due_at).limit(1))
    if appt is None and is_postgres(session):
        # no appointment to claim: the pump's row is the lock instead, so that of two refills
        # sent at once the second reads the first as its previous fill (and is refused if it
        # is the same one again) rather than both going through
        session.execute(select(ImplantedPump.serial_number)
                        .where(ImplantedPump.serial_number == pump.serial_number)
                        .with_for_update())
    if body.delivery_id and body.fill_type != "chemo" \
            and deliveries.get_row(uow, body.delivery_id) is None:
        raise Invalid("delivery_id", "no such delivery")
    refill_id = new_id()
    if appt is not None:
        # the conditional update is the lock: of two refills for one appointment, one wins.
        # Claim before reading the previous fill, so the loser waits here and answers 409
        # (rather than seeing the winner's refill and a 422); a later 422 rolls it back.
        claimed = deliveries.rowcount(session.execute(
            update(Appointment)
            .where(Appointment.id == appt.id, Appointment.status == "scheduled")
            .values(status="completed", refill_id=refill_id, updated_at=now)
            .execution_options(synchronize_session=False)
        ))
        if not claimed:
            raise Conflict("appointment was completed by another refill", current_status="completed")
        # the row now holds what was just written: mirror it without another round trip
        for key, value in (("status", "completed"), ("refill_id", refill_id), ("updated_at", now)):
            set_committed_value(appt, key, value)
    previous = _previous_fill(uow, pump)
    problems = refill_problems(now=now, performed_at=body.performed_at,
                               residual_volume_ml=body.residual_volume_ml,
                               fill_volume_ml=body.fill_volume_ml, reservoir_ml=pump.reservoir_ml,
                               previous=previous, implanted_at=pump.implanted_at,
                               min_interval_hours=settings.min_refill_interval_hours)
    delivery = _chemo_delivery(uow, body, appt, therapy, now) if body.fill_type == "chemo" else None
    if isinstance(delivery, str):
        problems.append(("delivery_id", delivery))
    if problems:
        raise _invalid(problems)
    figures = refill_figures(performed_at=body.performed_at,
                             residual_volume_ml=body.residual_volume_ml,
                             fill_volume_ml=body.fill_volume_ml,
                             labeled_flow_ml_per_day=pump.labeled_flow_ml_per_day, previous=previous)
    outside = appt is not None and is_outside_window(body.performed_at, appt.due_at,
                                                     settings.refill_window_days)
    center = (appt.center if appt is not None
              else get_patient_or_raise(uow=uow, mrn=therapy.patient_mrn).center)
    due_at, due_basis = next_due(performed_at=body.performed_at,
                                 interval_days=therapy.refill_interval_days,
                                 projected_empty_at=figures.projected_empty_at,
                                 near_empty_hours=settings.near_empty_hours)
    nxt = schedule_appointment(
        uow, therapy=therapy, center=center,
        fill_type=next_fill_type(therapy.regimen, body.fill_type),
        due_at=due_at, projected_empty_at=figures.projected_empty_at, due_basis=due_basis,
        announce=False,
    )
    refill = Refill(
        id=refill_id, pump_serial=pump.serial_number, patient_mrn=therapy.patient_mrn,
        center=center, therapy_id=therapy.id,
        appointment_id=appt.id if appt is not None else None, delivery_id=body.delivery_id,
        performed_at=body.performed_at, residual_volume_ml=body.residual_volume_ml,
        fill_volume_ml=body.fill_volume_ml, fill_type=body.fill_type, notes=body.notes,
        elapsed_days=figures.elapsed_days, measured_flow_ml_per_day=figures.measured_flow_ml_per_day,
        expected_flow_ml_per_day=figures.expected_flow_ml_per_day,
        flow_deviation_pct=figures.flow_deviation_pct, outside_window=outside,
        projected_empty_at=figures.projected_empty_at, recorded_by=actor, created_at=now,
        next_appointment_id=nxt.id,
    )
    session.add(refill)
    session.flush()  # the appointment and the refill in one flush, before the answer is read
    result = RefillRead.model_validate(refill)
    result.next_appointment = AppointmentRead.model_validate(nxt)
    events: list[tuple[str, Any, str | None]] = [(EventType.REFILL_COMPLETED, RefillCompletedData(
        **result.model_dump(exclude={"notes", "next_appointment", "therapy_id", "recorded_by",
                                     "created_at", "projected_empty_at"}),
        next_appointment=result.next_appointment.model_dump(mode="json"),
        projected_empty_at=figures.projected_empty_at,
    ), pump.serial_number)]
    if figures.measured_flow_ml_per_day is not None:
        assert figures.flow_deviation_pct is not None and figures.elapsed_days is not None
        events.append((EventType.FLOW_RECORDED, FlowRecordedData(
            pump_serial=pump.serial_number, patient_mrn=refill.patient_mrn, center=refill.center,
            measured_flow_ml_per_day=figures.measured_flow_ml_per_day,
            expected_flow_ml_per_day=figures.expected_flow_ml_per_day,
            flow_deviation_pct=figures.flow_deviation_pct,
            residual_volume_ml=body.residual_volume_ml, elapsed_days=figures.elapsed_days,
            refill_id=refill.id,
        ), pump.serial_number))
    events.append((EventType.APPOINTMENT_SCHEDULED, appointment_data(nxt), pump.serial_number))
    uow.publish_many(events)  # one statement for all three events
    if isinstance(delivery, Delivery):
        deliveries.record_administration(uow, delivery, refill_id=refill.id,
                                         performed_at=body.performed_at, actor=actor)
    uow.audit(actor=actor, action="refill.recorded", entity_type="refill", entity_id=refill.id,
              changes={"pump_serial": pump.serial_number, "appointment_id": refill.appointment_id,
                       "residual_volume_ml": body.residual_volume_ml,
                       "fill_volume_ml": body.fill_volume_ml, "fill_type": body.fill_type,
                       "measured_flow_ml_per_day": figures.measured_flow_ml_per_day})
    log.info("refill.recorded", refill_id=refill.id, pump_serial=pump.serial_number,
             outside_window=outside, flow_deviation_pct=figures.flow_deviation_pct)
    deliveries.place_order_if_due(uow, nxt, settings=settings, actor=actor)
    return result


def get_refill(*, uow: UnitOfWork, refill_id: str) -> RefillRead:
    """One refill, with the appointment it scheduled."""
    refill = uow.session.get(Refill, refill_id)
    if refill is None:
        raise NotFound(f"no refill {refill_id}")
    return _refill_read(uow, refill)


def _refill_read(uow: UnitOfWork, refill: Refill) -> RefillRead:
    result = RefillRead.model_validate(refill)
    if refill.next_appointment_id:
        nxt = uow.session.get(Appointment, refill.next_appointment_id)
        result.next_appointment = AppointmentRead.model_validate(nxt) if nxt else None
    return result


def list_refills(*, uow: UnitOfWork, page: PageParams, pump_serial: str | None,
                 patient_mrn: str | None) -> Page[RefillRead]:
    """Refills, newest first, optionally of one pump or patient."""
    stmt = select(Refill)
    if pump_serial:
        stmt = stmt.where(Refill.pump_serial == pump_serial)
    if patient_mrn:
        stmt = stmt.where(Refill.patient_mrn == patient_mrn)
    return paginate(uow.session, stmt, keys=[Refill.performed_at, Refill.id], params=page,
                    to_item=lambda r: _refill_read(uow, r), descending=True)


def void_refill(*, uow: UnitOfWork, refill_id: str, body: RefillVoid, actor: str) -> RefillRead:
    """Mark the latest refill of a pump entered in error: its row stays for the audit, its
    reading leaves every figure, the appointment it created is cancelled (with its open order)
    and the one it completed is open again; `refill.voided` tells alerts."""
    session = uow.session
    refill = session.get(Refill, refill_id)
    if refill is None:
        raise NotFound(f"no refill {refill_id}")
    if refill.status == ENTERED_IN_ERROR:
        raise _already_void(refill)
    now = uow.now()
    # locks in record_refill's order (the appointment, then the pump): the conditional update
    # of the appointment this refill created races a refill completing it, and one wins
    cancelled = None
    if refill.next_appointment_id:
        cancelled = refill.next_appointment_id if deliveries.rowcount(session.execute(
            update(Appointment)
            .where(Appointment.id == refill.next_appointment_id, Appointment.status == "scheduled")
            .values(status="cancelled", updated_at=now)
            .execution_options(synchronize_session=False))) else None
    if is_postgres(session):
        session.execute(select(ImplantedPump.serial_number)
                        .where(ImplantedPump.serial_number == refill.pump_serial).with_for_update())
    claimed = deliveries.rowcount(session.execute(
        update(Refill).where(Refill.id == refill.id, Refill.status == RECORDED)
        .values(status=ENTERED_IN_ERROR, voided_by=actor, voided_at=now, void_reason=body.reason)
        .execution_options(synchronize_session=False)))
    session.refresh(refill)
    if not claimed:
        raise _already_void(refill)
    later = session.scalar(select(Refill).where(
        Refill.pump_serial == refill.pump_serial, Refill.status == RECORDED,
        (Refill.performed_at > refill.performed_at)
        | ((Refill.performed_at == refill.performed_at) & (Refill.id > refill.id)),
    ).order_by(Refill.performed_at.desc(), Refill.id.desc()).limit(1))
    if later is not None:
        raise Conflict(f"only the latest refill of pump {refill.pump_serial} can be entered in "
                       f"error; the latest is refill {later.id} performed at "
                       f"{later.performed_at.isoformat()}: correct that one first",
                       current_status="not_latest", latest_refill_id=later.id)
    reopened = None
    therapy = session.get(Therapy, refill.therapy_id) if refill.therapy_id else None
    if refill.appointment_id and therapy is not None and therapy.status in OPEN_THERAPY:
        if deliveries.rowcount(session.execute(
                update(Appointment)
                .where(Appointment.id == refill.appointment_id, Appointment.status == "completed",
                       Appointment.refill_id == refill.id)
                # open again, its facts untold: the sweep announces them anew if still due
                .values(status="scheduled", refill_id=None, updated_at=now,
                        due_soon_announced_at=None, overdue_announced_at=None,
                        near_empty_announced_at=None)
                .execution_options(synchronize_session=False))):
            reopened = refill.appointment_id
    deliveries.withdraw_administration(uow, refill_id=refill.id, actor=actor,
                                       reason=f"refill {refill.id} entered in error: {body.reason}")
    if cancelled is not None and refill.therapy_id:
        deliveries.cancel_open_orders(uow, therapy_id=refill.therapy_id, actor=actor,
                                      reason=f"refill {refill.id} entered in error",
                                      appointment_id=cancelled)
    events: list[tuple[str, Any, str | None]] = [(EventType.REFILL_VOIDED, RefillVoidedData(
        refill_id=refill.id, pump_serial=refill.pump_serial, patient_mrn=refill.patient_mrn,
        center=refill.center, reason=body.reason, voided_by=actor, voided_at=now,
        cancelled_appointment_id=cancelled, reopened_appointment_id=reopened,
    ), refill.pump_serial)]
    if reopened is not None:
        appt = session.get(Appointment, reopened)
        assert appt is not None
        session.refresh(appt)
        events.append((EventType.APPOINTMENT_SCHEDULED, appointment_data(appt), refill.pump_serial))
    uow.publish_many(events)
    uow.audit(actor=actor, action="refill.entered_in_error", entity_type="refill",
              entity_id=refill.id, changes={"reason": body.reason,
                                            "cancelled_appointment_id": cancelled,
                                            "reopened_appointment_id": reopened})
    log.info("refill.entered_in_error", refill_id=refill.id, pump_serial=refill.pump_serial,
             cancelled_appointment_id=cancelled, reopened_appointment_id=reopened)
    return _refill_read(uow, refill)


def _already_void(refill: Refill) -> Conflict:
    when = refill.voided_at.isoformat() if refill.voided_at else "earlier"
    return Conflict(f"refill {refill.id} is already entered in error (by {refill.voided_by} at "
                    f"{when})", current_status=ENTERED_IN_ERROR)


def flow_readings(*, uow: UnitOfWork, pump_serial: str, page: PageParams) -> Page[FlowReading]:
    """The measured flow series of a pump, oldest first."""
    if uow.session.get(ImplantedPump, pump_serial) is None:
        raise NotFound(f"scheduling knows no pump {pump_serial}")
    stmt = select(Refill).where(Refill.pump_serial == pump_serial, Refill.status == RECORDED,
                                Refill.measured_flow_ml_per_day.is_not(None))

    def to_item(r: Refill) -> FlowReading:
        return FlowReading(refill_id=r.id, performed_at=r.performed_at,
                           elapsed_days=r.elapsed_days or 0.0,
                           residual_volume_ml=r.residual_volume_ml,
                           measured_flow_ml_per_day=r.measured_flow_ml_per_day or 0.0,
                           expected_flow_ml_per_day=r.expected_flow_ml_per_day,
                           flow_deviation_pct=r.flow_deviation_pct or 0.0)

    return paginate(uow.session, stmt, keys=[Refill.performed_at, Refill.id], params=page,
                    to_item=to_item)

