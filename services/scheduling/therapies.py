"""Therapies: start (with the first appointment and its order), dosing checks, pause, resume
and stop (with the appointments and orders that go with them)."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from services.scheduling import deliveries
from services.scheduling.appointments import open_appointments, schedule_appointment
from services.scheduling.centers import effective_settings
from services.scheduling.dosing import (
    DosingError,
    diluent_text,
    dosing_weight_kg,
    hard_limit_problems,
    in_label_range,
)
from services.scheduling.flow import first_fill_type, start_of_day_utc
from services.scheduling.models import ImplantedPump, Patient, Therapy
from services.scheduling.patients import get_patient_or_raise
from services.scheduling.schemas import (
    NextOrderRead,
    OrderDrugRead,
    TherapyCreate,
    TherapyRead,
    TherapyUpdate,
)
from services.scheduling.settings import SchedulingSettings
from shared.contracts.scheduling import TherapyStatusChangedData
from shared.contracts.vocabulary import (
    OPEN_THERAPY_STATUSES,
    AppointmentStatus,
    FillType,
    PumpStatus,
    Regimen,
    TherapyStatus,
)
from shared.db import UnitOfWork, new_id
from shared.dberrors import is_unique_violation
from shared.errors import Conflict, Invalid, NotFound
from shared.pagination import Page, PageParams, paginate


def _validate_dosing(therapy: Therapy, patient: Patient, pump: ImplantedPump,
                     settings: SchedulingSettings) -> None:
    hard = hard_limit_problems(fudr_mg_per_kg_day=therapy.fudr_mg_per_kg_day,
                               dexamethasone_mg=therapy.dexamethasone_mg,
                               heparin_units=therapy.heparin_units,
                               limits=deliveries.hard_limits(settings))
    if hard:
        raise Invalid.of(hard)
    if therapy.fill_volume_ml is not None and therapy.fill_volume_ml > pump.reservoir_ml:
        raise Invalid("fill_volume_ml", f"{therapy.fill_volume_ml} mL is above the pump's "
                                        f"reservoir of {pump.reservoir_ml} mL")
    if therapy.regimen != Regimen.FUDR_ALTERNATING:
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
                   settings: SchedulingSettings) -> TherapyRead:
    """Start a therapy on a pump scheduling has seen implanted in that patient; schedule its first fill."""
    session = uow.session
    patient = session.get(Patient, body.patient_mrn)
    if patient is None:
        raise Invalid("patient_mrn", "no patient with this MRN")
    pump = session.get(ImplantedPump, body.pump_serial)
    if pump is None or pump.status != PumpStatus.IMPLANTED or pump.patient_mrn != body.patient_mrn:
        known = "unknown to scheduling" if pump is None else (
            pump.status if pump.patient_mrn == body.patient_mrn else f"{pump.status} in another patient")
        raise Conflict(f"scheduling has not seen pump {body.pump_serial} implanted in this patient "
                       f"(current state: {known})", current_status=known)
    _refuse_second_open_therapy(uow, body)
    now = uow.now()
    dose = body.fudr_mg_per_kg_day
    if body.regimen == Regimen.FUDR_ALTERNATING and dose is None:
        dose = settings.fudr_default_mg_per_kg_day
    therapy = Therapy(
        id=new_id(), patient_mrn=body.patient_mrn, pump_serial=body.pump_serial,
        regimen=body.regimen, status=TherapyStatus.ACTIVE, start_on=body.start_on,
        refill_interval_days=(body.refill_interval_days or effective_settings(
            uow, settings, patient.center).refill_interval_days),
        fudr_mg_per_kg_day=dose, dosing_weight=body.dosing_weight,
        dexamethasone_mg=body.dexamethasone_mg, heparin_units=body.heparin_units,
        fill_volume_ml=body.fill_volume_ml,
        dose_override_by=actor if body.dose_override_reason else None,
        dose_override_reason=body.dose_override_reason,
        created_by=actor, created_at=now, updated_at=now,
    )
    _validate_dosing(therapy, patient, pump, settings)
    session.add(therapy)
    try:
        session.flush()
    except IntegrityError as exc:
        # a concurrent request opened one after our check: the database's unique index refused
        # ours; say which therapy is open now
        if not is_unique_violation(exc):
            raise
        uow.rollback()
        _refuse_second_open_therapy(uow, body)
        raise Conflict("this pump or patient already has an open therapy") from None
    uow.audit(actor=actor, action="therapy.created", entity_type="therapy", entity_id=therapy.id,
              changes=body.model_dump(mode="json"))
    appt = schedule_appointment(uow, therapy=therapy, center=patient.center,
                                fill_type=first_fill_type(therapy.regimen),
                                due_at=start_of_day_utc(body.start_on), projected_empty_at=None)
    deliveries.place_order_if_due(uow, appt, settings=settings, actor=actor)
    return TherapyRead.model_validate(therapy)


def _refuse_second_open_therapy(uow: UnitOfWork, body: TherapyCreate) -> None:
    """409 naming the open therapy when the pump or the patient already has one."""
    open_one = uow.session.scalar(select(Therapy).where(
        or_(Therapy.pump_serial == body.pump_serial, Therapy.patient_mrn == body.patient_mrn),
        Therapy.status.in_(OPEN_THERAPY_STATUSES)).limit(1))
    if open_one is None:
        return
    owner = (f"pump {body.pump_serial}" if open_one.pump_serial == body.pump_serial
             else f"this patient (on pump {open_one.pump_serial})")
    raise Conflict(f"{owner} already has therapy {open_one.id} (status {open_one.status}); "
                   "stop it before starting another", current_status=open_one.status,
                   therapy_id=open_one.id)


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
                   settings: SchedulingSettings) -> TherapyRead:
    """Pause, resume or stop a therapy, and/or change its dosing settings."""
    therapy = get_therapy_or_raise(uow=uow, therapy_id=therapy_id)
    if therapy.status == TherapyStatus.STOPPED:
        raise Conflict("therapy is stopped; start a new one", current_status=TherapyStatus.STOPPED)
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
        if therapy.status != TherapyStatus.ACTIVE:
            raise Conflict(f"therapy is {therapy.status}; only an active therapy pauses",
                           current_status=therapy.status)
        therapy.status, therapy.status_reason = TherapyStatus.PAUSED, body.reason
        deliveries.cancel_open_orders(uow, therapy_id=therapy.id, actor=actor,
                                      reason=body.reason or "therapy paused")
        uow.audit(actor=actor, action="therapy.paused", entity_type="therapy",
                  entity_id=therapy.id, changes={"reason": body.reason})
        publish_status(uow, therapy, actor=actor)
    elif body.action == "resume":
        if therapy.status != TherapyStatus.PAUSED:
            raise Conflict(f"therapy is {therapy.status}; only a paused therapy resumes",
                           current_status=therapy.status)
        therapy.status, therapy.status_reason = TherapyStatus.ACTIVE, body.reason
        uow.audit(actor=actor, action="therapy.resumed", entity_type="therapy",
                  entity_id=therapy.id, changes={"reason": body.reason})
        publish_status(uow, therapy, actor=actor)
    elif body.action == "stop":
        stop_therapy(uow, therapy, actor=actor, reason=body.reason, settings=settings)
    therapy.updated_at = uow.now()
    uow.session.flush()
    if therapy.status == TherapyStatus.ACTIVE:
        for appt in open_appointments(uow, therapy_id=therapy.id):
            deliveries.place_order_if_due(uow, appt, settings=settings, actor=actor)
    return TherapyRead.model_validate(therapy)


def stop_therapy(uow: UnitOfWork, therapy: Therapy, *, actor: str, reason: str | None,
                  settings: SchedulingSettings) -> None:
    now = uow.now()
    therapy.status, therapy.status_reason, therapy.updated_at = TherapyStatus.STOPPED, reason, now
    cancelled = []
    for appt in open_appointments(uow, therapy_id=therapy.id):
        appt.status, appt.updated_at = AppointmentStatus.CANCELLED, now
        cancelled.append(appt.id)
    uow.session.flush()
    deliveries.cancel_open_orders(uow, therapy_id=therapy.id, actor=actor,
                                  reason=reason or "therapy stopped")
    uow.audit(actor=actor, action="therapy.stopped", entity_type="therapy", entity_id=therapy.id,
              changes={"reason": reason, "cancelled_appointments": cancelled})
    publish_status(uow, therapy, actor=actor)


def publish_status(uow: UnitOfWork, therapy: Therapy, *, actor: str) -> None:
    """Tell the others (alerts holds a paused pump's warnings) that the therapy is now paused,
    active again or stopped: through the outbox, in the transaction that changed it."""
    patient = get_patient_or_raise(uow=uow, mrn=therapy.patient_mrn)
    uow.publish(TherapyStatusChangedData(
        therapy_id=therapy.id, patient_mrn=therapy.patient_mrn, pump_serial=therapy.pump_serial,
        center=patient.center, status=TherapyStatus(therapy.status),
        reason=therapy.status_reason, changed_by=actor, at=uow.now()), subject=therapy.pump_serial)


def next_order(*, uow: UnitOfWork, therapy_id: str, settings: SchedulingSettings) -> NextOrderRead:
    """The drugs of the therapy's next chemo fill as they would be ordered now, with their basis,
    or the reason the order would be refused (the same checks as the order itself)."""
    therapy = get_therapy_or_raise(uow=uow, therapy_id=therapy_id)
    out = NextOrderRead(therapy_id=therapy.id, patient_mrn=therapy.patient_mrn,
                        pump_serial=therapy.pump_serial, regimen=therapy.regimen,
                        therapy_status=therapy.status)
    if therapy.regimen != Regimen.FUDR_ALTERNATING:
        return out
    chemo = [a for a in open_appointments(uow, therapy_id=therapy.id)
             if a.fill_type == FillType.CHEMO]
    if chemo:
        out.appointment_id, out.due_at, out.delivery_id = (chemo[0].id, chemo[0].due_at,
                                                           chemo[0].delivery_id)
    patient = get_patient_or_raise(uow=uow, mrn=therapy.patient_mrn)
    pump = uow.session.get(ImplantedPump, therapy.pump_serial)
    if pump is None or pump.status != PumpStatus.IMPLANTED:
        out.refused_field, out.refused_reason = "pump_serial", "the pump is no longer implanted"
        return out
    try:
        fill = deliveries.compute_fill(therapy, patient, pump, deliveries.latest_flows(
            uow, {pump.serial_number: pump}), settings)
    except DosingError as exc:
        out.refused_field, out.refused_reason = exc.field, exc.message
        return out
    out.fill_volume_ml, out.flow_ml_per_day, out.flow_source = (
        fill.fill_volume_ml, fill.flow_ml_per_day, fill.flow_source)
    out.dosing_weight_kg = fill.weight.kg
    out.drugs = [OrderDrugRead(code=line.code, name=line.name, amount=line.amount, unit=line.unit,
                               basis=line.basis) for line in fill.lines]
    out.diluent = diluent_text(fill.fill_volume_ml)
    return out
