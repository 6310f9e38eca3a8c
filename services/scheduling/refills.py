"""Refills: recording one (claim the appointment, compute the figures, build the events),
entering one in error, and the flow readings they give."""

from __future__ import annotations

from datetime import datetime

import structlog
from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.orm.attributes import set_committed_value

from services.scheduling import deliveries, drift
from services.scheduling.appointments import appointment_data, judged, schedule_appointment
from services.scheduling.centers import effective_settings
from services.scheduling.flow import (
    DeliveryFacts,
    FlowFigures,
    PreviousFill,
    RefillOutcome,
    chemo_delivery_problem,
    refill_outcome,
    refill_problems,
)
from services.scheduling.models import (
    Appointment,
    Delivery,
    ImplantedPump,
    Refill,
    Therapy,
)
from services.scheduling.patients import get_patient_or_raise
from services.scheduling.schemas import (
    AppointmentRead,
    FlowProjection,
    FlowReading,
    FlowReadingsPage,
    RefillCreate,
    RefillRead,
    RefillVoid,
)
from services.scheduling.settings import SchedulingSettings
from services.scheduling.urgency import is_flow_abnormal
from shared.clock import ensure_utc
from shared.contracts.scheduling import (
    AppointmentScheduledData,
    FlowRecordedData,
    RefillCompletedData,
    RefillVoidedData,
)
from shared.contracts.vocabulary import (
    OPEN_THERAPY_STATUSES,
    AppointmentStatus,
    FillType,
    PumpStatus,
    RefillStatus,
)
from shared.db import UnitOfWork, is_postgres, new_id, rowcount
from shared.errors import Conflict, Invalid, NotFound
from shared.pagination import Page, PageParams, paginate

log = structlog.get_logger(__name__)


def _previous_fill(uow: UnitOfWork, pump: ImplantedPump) -> PreviousFill | None:
    """When the pump was last filled since its implant, with how much, and by which refill."""
    stmt = select(Refill.performed_at, Refill.fill_volume_ml, Refill.id).where(
        Refill.pump_serial == pump.serial_number, Refill.status == RefillStatus.RECORDED)
    if pump.implanted_at is not None:
        stmt = stmt.where(Refill.performed_at >= pump.implanted_at)
    row = uow.session.execute(
        stmt.order_by(Refill.performed_at.desc(), Refill.id.desc()).limit(1)).first()
    return PreviousFill(row[0], row[1], row[2]) if row is not None else None


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
                  settings: SchedulingSettings) -> RefillRead:
    """Record a refill: claim the appointment it completes, compute its figures, write it with
    the next appointment, and build its events."""
    now = uow.now()
    body = body.model_copy(update={"performed_at": ensure_utc(body.performed_at)})
    pump, therapy = _pump_with_open_therapy(uow, body.pump_serial)
    appt = _appointment_to_complete(uow, body, pump)
    settings = effective_settings(uow, settings, appt.center if appt is not None else pump.center)
    _refuse_unknown_delivery(uow, body)
    refill_id = new_id()
    _claim(uow, pump, appt, refill_id=refill_id, now=now)
    previous = _previous_fill(uow, pump)
    delivery = (_chemo_delivery(uow, body, appt, therapy, now) if body.fill_type == FillType.CHEMO
                else None)
    outcome = _outcome_or_refuse(body, pump, therapy, appt, previous, settings=settings, now=now,
                                 delivery_problem=delivery if isinstance(delivery, str) else None)
    refill, nxt = _write(uow, body, pump, therapy, appt, outcome, refill_id=refill_id, actor=actor,
                         now=now)
    result = RefillRead.model_validate(refill)
    result.next_appointment = AppointmentRead.model_validate(nxt)
    events = _refill_events(result, refill, nxt, outcome.figures)
    if outcome.figures.flow_deviation_pct is not None:
        trend = drift.trend_event(uow, refill, settings)
        if trend is not None:
            events.append((trend, refill.pump_serial))
    uow.publish_many(events)  # one statement for all
    result = _judged(result, now=now, settings=settings)  # the answer's, after the events are built
    if isinstance(delivery, Delivery):
        deliveries.record_administration(uow, delivery, refill_id=refill.id,
                                         performed_at=body.performed_at, actor=actor)
    uow.audit(actor=actor, action="refill.recorded", entity_type="refill", entity_id=refill.id,
              changes={"pump_serial": pump.serial_number, "appointment_id": refill.appointment_id,
                       "residual_volume_ml": body.residual_volume_ml,
                       "fill_volume_ml": body.fill_volume_ml, "fill_type": body.fill_type,
                       "measured_flow_ml_per_day": outcome.figures.measured_flow_ml_per_day})
    log.info("refill.recorded", refill_id=refill.id, pump_serial=pump.serial_number,
             outside_window=outcome.outside_window,
             flow_deviation_pct=outcome.figures.flow_deviation_pct)
    deliveries.place_order_if_due(uow, nxt, settings=settings, actor=actor)
    if outcome.figures.flow_deviation_pct is not None:
        # last: the lot's row is every reading of the lot's, locked from its update to the
        # commit; taken earlier, concurrent readings of one lot queued behind the rest of
        # each other's transactions (at 20 a second, most of the time a refill took)
        drift.on_reading_unless_locked(uow, pump=pump,
                                       deviation_pct=outcome.figures.flow_deviation_pct,
                                       settings=settings)
    return result


def _pump_with_open_therapy(uow: UnitOfWork, pump_serial: str) -> tuple[ImplantedPump, Therapy]:
    """The implanted pump refilled and its open therapy; 404 or 409 otherwise."""
    pump = uow.session.get(ImplantedPump, pump_serial)
    if pump is None:
        raise NotFound(f"scheduling knows no implanted pump {pump_serial}")
    if pump.status != PumpStatus.IMPLANTED:
        raise Conflict(f"pump {pump_serial} is {pump.status}", current_status=pump.status)
    therapy = uow.session.scalar(select(Therapy).where(
        Therapy.pump_serial == pump.serial_number, Therapy.status.in_(OPEN_THERAPY_STATUSES)))
    if therapy is None:
        raise Conflict(f"pump {pump_serial} has no active therapy", current_status="none")
    return pump, therapy


def _appointment_to_complete(uow: UnitOfWork, body: RefillCreate,
                             pump: ImplantedPump) -> Appointment | None:
    """The scheduled appointment the refill completes: the one named, else the pump's earliest."""
    if body.appointment_id:
        appt = uow.session.get(Appointment, body.appointment_id)
        if appt is None or appt.pump_serial != pump.serial_number:
            raise Invalid("appointment_id", "no such appointment for this pump")
        if appt.status != AppointmentStatus.SCHEDULED:
            raise Conflict(f"appointment is {appt.status}", current_status=appt.status)
        return appt
    return uow.session.scalar(select(Appointment).where(
        Appointment.pump_serial == pump.serial_number,
        Appointment.status == AppointmentStatus.SCHEDULED,
    ).order_by(Appointment.due_at).limit(1))


def _refuse_unknown_delivery(uow: UnitOfWork, body: RefillCreate) -> None:
    """422 when a saline fill names a delivery that does not exist (a chemo fill's delivery is
    checked, and locked, by `_chemo_delivery`)."""
    if body.delivery_id and body.fill_type != FillType.CHEMO \
            and uow.session.get(Delivery, body.delivery_id) is None:
        raise Invalid("delivery_id", "no such delivery")


def _claim(uow: UnitOfWork, pump: ImplantedPump, appt: Appointment | None, *, refill_id: str,
           now: datetime) -> None:
    """Complete the appointment for this refill, or 409 when another refill completed it first.
    Done before the previous fill is read, so that of two refills sent at once the loser waits
    here and answers 409 (rather than seeing the winner's refill and a 422); a later 422 rolls
    the claim back."""
    session = uow.session
    if appt is None:
        if is_postgres(session):
            # no appointment to claim: the pump's row is the lock instead, so that of two refills
            # sent at once the second reads the first as its previous fill (and is refused if it
            # is the same one again) rather than both going through
            session.execute(select(ImplantedPump.serial_number)
                            .where(ImplantedPump.serial_number == pump.serial_number)
                            .with_for_update())
        return
    # the conditional update is the lock: of two refills for one appointment, one wins
    claimed = rowcount(session.execute(
        update(Appointment)
        .where(Appointment.id == appt.id, Appointment.status == AppointmentStatus.SCHEDULED)
        .values(status=AppointmentStatus.COMPLETED, refill_id=refill_id, updated_at=now)
        .execution_options(synchronize_session=False)
    ))
    if not claimed:
        raise Conflict("appointment was completed by another refill",
                       current_status=AppointmentStatus.COMPLETED)
    # the row now holds what was just written: mirror it without another round trip
    for key, value in (("status", AppointmentStatus.COMPLETED), ("refill_id", refill_id),
                       ("updated_at", now)):
        set_committed_value(appt, key, value)


def _outcome_or_refuse(body: RefillCreate, pump: ImplantedPump, therapy: Therapy,
                       appt: Appointment | None, previous: PreviousFill | None, *,
                       settings: SchedulingSettings, now: datetime,
                       delivery_problem: str | None) -> RefillOutcome:
    """The refill's figures and next fill, or a 422 naming every impossible number."""
    problems = refill_problems(now=now, performed_at=body.performed_at,
                               residual_volume_ml=body.residual_volume_ml,
                               fill_volume_ml=body.fill_volume_ml, reservoir_ml=pump.reservoir_ml,
                               previous=previous, implanted_at=pump.implanted_at,
                               min_interval_hours=settings.min_refill_interval_hours)
    if delivery_problem is not None:
        problems.append(("delivery_id", delivery_problem))
    if problems:
        raise Invalid.of(problems)
    return refill_outcome(performed_at=body.performed_at, residual_volume_ml=body.residual_volume_ml,
                          fill_volume_ml=body.fill_volume_ml, fill_type=body.fill_type,
                          labeled_flow_ml_per_day=pump.labeled_flow_ml_per_day, previous=previous,
                          appointment_due_at=appt.due_at if appt is not None else None,
                          regimen=therapy.regimen, refill_interval_days=therapy.refill_interval_days,
                          window_days=settings.refill_window_days,
                          near_empty_hours=settings.near_empty_hours)


def _write(uow: UnitOfWork, body: RefillCreate, pump: ImplantedPump, therapy: Therapy,
           appt: Appointment | None, outcome: RefillOutcome, *, refill_id: str, actor: str,
           now: datetime) -> tuple[Refill, Appointment]:
    """The refill's row and the next appointment it schedules (announced with the refill)."""
    center = (appt.center if appt is not None
              else get_patient_or_raise(uow=uow, mrn=therapy.patient_mrn).center)
    figures = outcome.figures
    nxt = schedule_appointment(
        uow, therapy=therapy, center=center, fill_type=outcome.next_fill_type,
        due_at=outcome.next_due_at, projected_empty_at=figures.projected_empty_at,
        due_basis=outcome.next_due_basis, announce=False,
    )
    refill = Refill(
        id=refill_id, pump_serial=pump.serial_number, patient_mrn=therapy.patient_mrn,
        center=center, therapy_id=therapy.id,
        appointment_id=appt.id if appt is not None else None,
        appointment_due_at=appt.due_at if appt is not None else None, delivery_id=body.delivery_id,
        performed_at=body.performed_at, residual_volume_ml=body.residual_volume_ml,
        fill_volume_ml=body.fill_volume_ml, fill_type=body.fill_type, notes=body.notes,
        elapsed_days=figures.elapsed_days, measured_flow_ml_per_day=figures.measured_flow_ml_per_day,
        expected_flow_ml_per_day=figures.expected_flow_ml_per_day,
        flow_deviation_pct=figures.flow_deviation_pct, outside_window=outcome.outside_window,
        projected_empty_at=figures.projected_empty_at, recorded_by=actor, created_at=now,
        next_appointment_id=nxt.id,
    )
    uow.session.add(refill)
    uow.session.flush()  # the appointment and the refill in one flush, before the answer is read
    return refill, nxt


# read-time judgements of the HTTP answers (CONTRACT.md, Scheduling): not facts for the events
ANSWER_ONLY = {"flow_abnormal", "flow_warning_pct", "urgency", "near_empty"}


def _refill_events(result: RefillRead, refill: Refill, nxt: Appointment,
                   figures: FlowFigures) -> list[tuple[BaseModel, str | None]]:
    """`refill.completed`, `flow.recorded` when the flow could be measured, and the next
    appointment's `appointment.scheduled`."""
    assert result.next_appointment is not None
    events: list[tuple[BaseModel, str | None]] = [(RefillCompletedData(
        **result.model_dump(exclude={"notes", "next_appointment", "therapy_id", "recorded_by",
                                     "created_at", "projected_empty_at", *ANSWER_ONLY}),
        next_appointment=result.next_appointment.model_dump(mode="json", exclude=ANSWER_ONLY),
        projected_empty_at=figures.projected_empty_at,
    ), refill.pump_serial)]
    if figures.measured_flow_ml_per_day is not None:
        assert figures.flow_deviation_pct is not None and figures.elapsed_days is not None
        events.append((FlowRecordedData(
            pump_serial=refill.pump_serial, patient_mrn=refill.patient_mrn, center=refill.center,
            measured_flow_ml_per_day=figures.measured_flow_ml_per_day,
            expected_flow_ml_per_day=figures.expected_flow_ml_per_day,
            flow_deviation_pct=figures.flow_deviation_pct,
            residual_volume_ml=refill.residual_volume_ml, elapsed_days=figures.elapsed_days,
            refill_id=refill.id,
        ), refill.pump_serial))
    events.append((appointment_data(nxt, AppointmentScheduledData), refill.pump_serial))
    return events


def get_refill(*, uow: UnitOfWork, refill_id: str, settings: SchedulingSettings) -> RefillRead:
    """One refill, with the appointment it scheduled."""
    refill = uow.session.get(Refill, refill_id)
    if refill is None:
        raise NotFound(f"no refill {refill_id}")
    return _refill_read(uow, refill, settings)


def _refill_read(uow: UnitOfWork, refill: Refill, settings: SchedulingSettings) -> RefillRead:
    settings = effective_settings(uow, settings, refill.center)
    result = RefillRead.model_validate(refill)
    if refill.next_appointment_id:
        nxt = uow.session.get(Appointment, refill.next_appointment_id)
        result.next_appointment = AppointmentRead.model_validate(nxt) if nxt else None
    return _judged(result, now=uow.now(), settings=settings)


def _judged(result: RefillRead, *, now: datetime, settings: SchedulingSettings) -> RefillRead:
    """A refill as the API answers it: whether its flow is abnormal, by which band, and its next
    appointment's urgency as of `now` (CONTRACT.md, Scheduling)."""
    nxt = result.next_appointment
    return result.model_copy(update={
        "flow_abnormal": is_flow_abnormal(result.flow_deviation_pct,
                                          flow_warning_pct=settings.flow_warning_pct),
        "flow_warning_pct": settings.flow_warning_pct,
        "next_appointment": judged(nxt, now=now, settings=settings) if nxt else None,
    })


def list_refills(*, uow: UnitOfWork, page: PageParams, pump_serial: str | None,
                 patient_mrn: str | None, settings: SchedulingSettings) -> Page[RefillRead]:
    """Refills, newest first, optionally of one pump or patient."""
    stmt = select(Refill)
    if pump_serial:
        stmt = stmt.where(Refill.pump_serial == pump_serial)
    if patient_mrn:
        stmt = stmt.where(Refill.patient_mrn == patient_mrn)
    return paginate(uow.session, stmt, keys=[Refill.performed_at, Refill.id], params=page,
                    to_item=lambda r: _refill_read(uow, r, settings), descending=True)


def void_refill(*, uow: UnitOfWork, refill_id: str, body: RefillVoid, actor: str,
                settings: SchedulingSettings) -> RefillRead:
    """Mark the latest refill of a pump entered in error: its row stays for the audit, its
    reading leaves every figure, the appointment it created is cancelled (with its open order)
    and the one it completed is open again; `refill.voided` tells alerts."""
    session = uow.session
    refill = session.get(Refill, refill_id)
    if refill is None:
        raise NotFound(f"no refill {refill_id}")
    if refill.status == RefillStatus.ENTERED_IN_ERROR:
        raise _already_void(refill)
    now = uow.now()
    # locks in record_refill's order (the appointment, then the pump): the conditional update
    # of the appointment this refill created races a refill completing it, and one wins
    cancelled = None
    if refill.next_appointment_id:
        cancelled = refill.next_appointment_id if rowcount(session.execute(
            update(Appointment)
            .where(Appointment.id == refill.next_appointment_id,
                   Appointment.status == AppointmentStatus.SCHEDULED)
            .values(status=AppointmentStatus.CANCELLED, updated_at=now)
            .execution_options(synchronize_session=False))) else None
    if is_postgres(session):
        session.execute(select(ImplantedPump.serial_number)
                        .where(ImplantedPump.serial_number == refill.pump_serial).with_for_update())
    claimed = rowcount(session.execute(
        update(Refill).where(Refill.id == refill.id, Refill.status == RefillStatus.RECORDED)
        .values(status=RefillStatus.ENTERED_IN_ERROR, voided_by=actor, voided_at=now, void_reason=body.reason)
        .execution_options(synchronize_session=False)))
    session.refresh(refill)
    if not claimed:
        raise _already_void(refill)
    later = session.scalar(select(Refill).where(
        Refill.pump_serial == refill.pump_serial, Refill.status == RefillStatus.RECORDED,
        (Refill.performed_at > refill.performed_at)
        | ((Refill.performed_at == refill.performed_at) & (Refill.id > refill.id)),
    ).order_by(Refill.performed_at.desc(), Refill.id.desc()).limit(1))
    if later is not None:
        raise Conflict(f"only the latest refill of pump {refill.pump_serial} can be entered in "
                       f"error; the latest is refill {later.id} performed at "
                       f"{later.performed_at.isoformat()}: correct that one first",
                       current_status="not_latest", latest_refill_id=later.id)
    pump = session.get(ImplantedPump, refill.pump_serial)
    if refill.flow_deviation_pct is not None and pump is not None:
        # the reading leaves the surveillance's sums too (an open lot alert stays for a person)
        drift.on_reading_unless_locked(uow, pump=pump, deviation_pct=refill.flow_deviation_pct,
                                       settings=settings, sign=-1)
    reopened = None
    therapy = session.get(Therapy, refill.therapy_id) if refill.therapy_id else None
    if refill.appointment_id and therapy is not None and therapy.status in OPEN_THERAPY_STATUSES:
        if rowcount(session.execute(
                update(Appointment)
                .where(Appointment.id == refill.appointment_id,
                       Appointment.status == AppointmentStatus.COMPLETED,
                       Appointment.refill_id == refill.id)
                # open again, its facts untold: the sweep announces them anew if still due
                .values(status=AppointmentStatus.SCHEDULED, refill_id=None, updated_at=now,
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
    events: list[tuple[BaseModel, str | None]] = [(RefillVoidedData(
        refill_id=refill.id, pump_serial=refill.pump_serial, patient_mrn=refill.patient_mrn,
        center=refill.center, reason=body.reason, voided_by=actor, voided_at=now,
        cancelled_appointment_id=cancelled, reopened_appointment_id=reopened,
    ), refill.pump_serial)]
    if reopened is not None:
        appt = session.get(Appointment, reopened)
        assert appt is not None
        session.refresh(appt)
        events.append((appointment_data(appt, AppointmentScheduledData), refill.pump_serial))
    uow.publish_many(events)
    uow.audit(actor=actor, action="refill.entered_in_error", entity_type="refill",
              entity_id=refill.id, changes={"reason": body.reason,
                                            "cancelled_appointment_id": cancelled,
                                            "reopened_appointment_id": reopened})
    log.info("refill.entered_in_error", refill_id=refill.id, pump_serial=refill.pump_serial,
             cancelled_appointment_id=cancelled, reopened_appointment_id=reopened)
    return _refill_read(uow, refill, settings)


def _already_void(refill: Refill) -> Conflict:
    when = refill.voided_at.isoformat() if refill.voided_at else "earlier"
    return Conflict(f"refill {refill.id} is already entered in error (by {refill.voided_by} at "
                    f"{when})", current_status=RefillStatus.ENTERED_IN_ERROR)


def flow_readings(*, uow: UnitOfWork, pump_serial: str, page: PageParams,
                  settings: SchedulingSettings) -> FlowReadingsPage:
    """The measured flow series of a pump, oldest first, each judged by its centre's warning
    band, with the trend of its last readings."""
    pump = uow.session.get(ImplantedPump, pump_serial)
    if pump is None:
        raise NotFound(f"scheduling knows no pump {pump_serial}")
    settings = effective_settings(uow, settings, pump.center)
    band = settings.flow_warning_pct
    stmt = select(Refill).where(Refill.pump_serial == pump_serial,
                                Refill.status == RefillStatus.RECORDED,
                                Refill.measured_flow_ml_per_day.is_not(None))

    def to_item(r: Refill) -> FlowReading:
        return FlowReading(refill_id=r.id, performed_at=r.performed_at,
                           elapsed_days=r.elapsed_days or 0.0,
                           residual_volume_ml=r.residual_volume_ml,
                           measured_flow_ml_per_day=r.measured_flow_ml_per_day or 0.0,
                           expected_flow_ml_per_day=r.expected_flow_ml_per_day,
                           flow_deviation_pct=r.flow_deviation_pct or 0.0,
                           flow_abnormal=bool(is_flow_abnormal(r.flow_deviation_pct or 0.0,
                                                               flow_warning_pct=band)),
                           flow_warning_pct=band)

    series = paginate(uow.session, stmt, keys=[Refill.performed_at, Refill.id], params=page,
                      to_item=to_item)
    trend = drift.pump_trend(uow, pump_serial=pump_serial, settings=settings)
    projection = None if trend is None else FlowProjection(
        **drift.trend_figures(trend), predicted_flow_ml_per_day=round(
            pump.labeled_flow_ml_per_day * (1 + trend.predicted_deviation_pct / 100), 4))
    return FlowReadingsPage(items=series.items, next_cursor=series.next_cursor, trend=projection)
