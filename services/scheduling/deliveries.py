"""Drug delivery orders: the dose arithmetic sent to the pharmacy, cancellations, and the
pharmacy's statuses (never backwards, duplicates harmless)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar, cast

import structlog
from sqlalchemy import Table, select, update

from services.scheduling.dosing import (
    DosingError,
    DosingWeight,
    DrugLine,
    HardLimits,
    check_order_hard_limits,
    diluent_text,
    dosing_weight_kg,
    hard_limit_problems,
    in_label_range,
    order_drug_lines,
)
from services.scheduling.models import (
    Appointment,
    Delivery,
    DeliveryEvent,
    ImplantedPump,
    Patient,
    Refill,
    Therapy,
)
from services.scheduling.schemas import DeliveryHistoryRead, DeliveryRead
from services.scheduling.settings import SchedulingSettings
from shared.clock import ensure_utc
from shared.contracts.pharmacy import (
    OrderCancelledData,
    OrderDrug,
    OrderPatient,
    OrderPump,
    OrderRequestedData,
)
from shared.contracts.scheduling import (
    DeliveryData,
    DeliveryHistoryEntry,
    DeliveryUpdatedData,
    OrderRefusedData,
)
from shared.contracts.vocabulary import (
    DELIVERY_PROGRESS,
    OPEN_DELIVERY_STATUSES,
    TERMINAL_DELIVERY_STATUSES,
    AppointmentStatus,
    DeliveryStatus,
    FillType,
    RefillStatus,
    TherapyStatus,
)
from shared.db import UnitOfWork, bulk_insert, new_id, rowcount
from shared.errors import NotFound
from shared.pagination import Page, PageParams, paginate

log = structlog.get_logger(__name__)

STATUS_RANK: dict[str, int] = {status: rank for rank, status in enumerate(DELIVERY_PROGRESS)}
Decision = Literal["apply", "duplicate", "late"]
D = TypeVar("D", bound=DeliveryData)


def decide(current: str, incoming: str) -> Decision:
    """Whether a status moves an order forward (apply), repeats it (duplicate) or comes too late."""
    if incoming == current:
        return "duplicate"
    if current in TERMINAL_DELIVERY_STATUSES:
        return "late"
    if incoming in (DeliveryStatus.REJECTED, DeliveryStatus.CANCELLED):
        return "apply"
    return "apply" if STATUS_RANK[incoming] > STATUS_RANK[current] else "late"


# ---------------------------------------------------------------- reading

def _history(uow: UnitOfWork, ids: Sequence[str]) -> dict[str, list[DeliveryEvent]]:
    out: dict[str, list[DeliveryEvent]] = {i: [] for i in ids}
    if not ids:
        return out
    rows = uow.session.scalars(select(DeliveryEvent).where(DeliveryEvent.delivery_id.in_(ids))
                               .order_by(DeliveryEvent.id))
    for row in rows:
        out[row.delivery_id].append(row)
    return out


def _read(d: Delivery, history: list[DeliveryEvent]) -> DeliveryRead:
    return DeliveryRead(
        id=d.id, appointment_id=d.appointment_id, therapy_id=d.therapy_id,
        patient_mrn=d.patient_mrn, pump_serial=d.pump_serial, center=d.center,
        needed_by=d.needed_by, status=d.status, drugs=d.drugs,
        fill_volume_ml=d.order.get("fill_volume_ml"), diluent=d.order.get("diluent"),
        lot=d.lot, beyond_use_at=d.beyond_use_at, administered_at=d.administered_at,
        refill_id=d.refill_id, created_at=d.created_at, updated_at=d.updated_at,
        history=[DeliveryHistoryRead(at=h.at, status=h.status, reason=h.reason, applied=h.applied)
                 for h in history],
    )


def _data(read: DeliveryRead, event: type[D] = DeliveryUpdatedData) -> D:  # type: ignore[assignment]
    """The delivery as the event `event` (updated, late) carries it."""
    return event(
        id=read.id, appointment_id=read.appointment_id, patient_mrn=read.patient_mrn,
        pump_serial=read.pump_serial, center=read.center, needed_by=read.needed_by,
        status=read.status, drugs=read.drugs,
        history=[DeliveryHistoryEntry(at=h.at, status=h.status, reason=h.reason)
                 for h in read.history],
        therapy_id=read.therapy_id, lot=read.lot, beyond_use_at=read.beyond_use_at,
        administered_at=read.administered_at, refill_id=read.refill_id,
    )


def get_delivery(*, uow: UnitOfWork, delivery_id: str) -> DeliveryRead:
    """One delivery with its history."""
    d = uow.session.get(Delivery, delivery_id)
    if d is None:
        raise NotFound(f"no delivery {delivery_id}")
    return _read(d, _history(uow, [d.id])[d.id])


def list_deliveries(*, uow: UnitOfWork, page: PageParams, status: str | None,
                    patient_mrn: str | None) -> Page[DeliveryRead]:
    """Deliveries, by needed-by time, optionally of one status or patient."""
    stmt = select(Delivery)
    if status:
        stmt = stmt.where(Delivery.status == status)
    if patient_mrn:
        stmt = stmt.where(Delivery.patient_mrn == patient_mrn)
    page_rows = paginate(uow.session, stmt, keys=[Delivery.needed_by, Delivery.id], params=page,
                         to_item=lambda d: d)
    history = _history(uow, [d.id for d in page_rows.items])
    return Page[DeliveryRead](items=[_read(d, history[d.id]) for d in page_rows.items],
                              next_cursor=page_rows.next_cursor)


# ---------------------------------------------------------------- ordering

def hard_limits(settings: SchedulingSettings) -> HardLimits:
    """The hard dose limits per fill (DOMAIN.md, Safety rules) of these settings."""
    return HardLimits(fudr_min_mg_per_kg_day=settings.fudr_hard_min_mg_per_kg_day,
                      fudr_max_mg_per_kg_day=settings.fudr_hard_max_mg_per_kg_day,
                      dexamethasone_max_mg=settings.dexamethasone_hard_max_mg,
                      heparin_max_units=settings.heparin_hard_max_units)


def place_order_if_due(uow: UnitOfWork, appt: Appointment, *, settings: SchedulingSettings,
                       actor: str) -> str | None:
    """Order a chemo fill at once when its appointment is already inside the pharmacy lead time;
    returns the order's id, or None when no order was placed."""
    if appt.fill_type != FillType.CHEMO or appt.status != AppointmentStatus.SCHEDULED \
            or appt.delivery_id is not None:
        return None
    if appt.due_at > uow.now() + timedelta(days=settings.pharmacy_lead_time_days):
        return None
    therapy = uow.session.get(Therapy, appt.therapy_id)
    if therapy is None or therapy.status != TherapyStatus.ACTIVE:
        return None
    order_id = new_id()
    claimed = rowcount(uow.session.execute(
        update(Appointment).where(Appointment.id == appt.id, Appointment.delivery_id.is_(None))
        .values(delivery_id=order_id).execution_options(synchronize_session=False)))
    if not claimed:
        return None
    uow.session.refresh(appt)
    placed, _failed = build_orders(uow, [appt], settings=settings, actor=actor)
    if not placed:
        uow.session.refresh(appt)  # the claim was released: the sweep tries again and logs why
        return None
    return placed[0]


def latest_flows(uow: UnitOfWork, pumps: dict[str, ImplantedPump]) -> dict[str, float]:
    """The latest measured flow of each pump since its implant."""
    flows: dict[str, float] = {}
    if not pumps:
        return flows
    rows = uow.session.execute(
        select(Refill.pump_serial, Refill.performed_at, Refill.measured_flow_ml_per_day)
        .where(Refill.pump_serial.in_(list(pumps)), Refill.status == RefillStatus.RECORDED,
               Refill.measured_flow_ml_per_day.is_not(None))
        .order_by(Refill.pump_serial, Refill.performed_at.desc())
    )
    for serial, performed_at, flow in rows:
        implanted_at = pumps[serial].implanted_at
        if serial in flows or (implanted_at is not None and performed_at < implanted_at):
            continue
        if flow and flow > 0:
            flows[serial] = float(flow)
    return flows


def build_orders(uow: UnitOfWork, appts: Sequence[Appointment], *, settings: SchedulingSettings,
                 actor: str) -> tuple[list[str], list[tuple[str, DosingError]]]:
    """Write the orders of appointments already claimed (their `delivery_id` set to the new
    order id): deliveries, history, `order.requested` and `delivery.updated`, in bulk (plain
    INSERTs: the sweep writes hundreds at once). Returns the ids of the orders placed, and the
    appointments whose dose could not be computed: their claim is released and reported."""
    session = uow.session
    now = uow.now()
    therapies = {t.id: t for t in session.scalars(
        select(Therapy).where(Therapy.id.in_({a.therapy_id for a in appts})))}
    patients = {p.mrn: p for p in session.scalars(
        select(Patient).where(Patient.mrn.in_({a.patient_mrn for a in appts})))}
    pumps = {p.serial_number: p for p in session.scalars(
        select(ImplantedPump).where(ImplantedPump.serial_number.in_({a.pump_serial for a in appts})))}
    flows = latest_flows(uow, pumps)
    placed: list[dict[str, Any]] = []
    failed: list[tuple[str, DosingError]] = []
    orders: list[tuple[OrderRequestedData, str | None]] = []
    updates: list[tuple[DeliveryUpdatedData, str | None]] = []
    audits = []
    history = []
    for appt in appts:
        assert appt.delivery_id is not None
        try:
            order = _order_for(appt, therapies.get(appt.therapy_id), patients.get(appt.patient_mrn),
                               pumps.get(appt.pump_serial), flows, settings)
        except DosingError as exc:
            failed.append((appt.id, exc))
            continue
        drugs = [d.model_dump(mode="json") for d in order.drugs]
        placed.append({
            "id": order.order_id, "appointment_id": appt.id, "therapy_id": appt.therapy_id,
            "patient_mrn": appt.patient_mrn, "pump_serial": appt.pump_serial,
            "center": appt.center, "needed_by": order.needed_by, "status": DeliveryStatus.REQUESTED,
            "drugs": drugs, "order": order.model_dump(mode="json"), "lot": None,
            "beyond_use_at": None, "created_at": now, "updated_at": now,
            "late_announced_at": None,
        })
        history.append({"delivery_id": order.order_id, "at": now, "status": DeliveryStatus.REQUESTED,
                        "reason": None, "applied": True, "source": "scheduling", "recorded_at": now})
        orders.append((order, order.order_id))
        audits.append({"at": now, "actor": actor, "action": "delivery.ordered",
                       "entity_type": "delivery", "entity_id": order.order_id,
                       "changes": {"appointment_id": appt.id, "drugs": drugs}})
    if failed:
        session.execute(update(Appointment).where(Appointment.id.in_([i for i, _ in failed]))
                        .values(delivery_id=None).execution_options(synchronize_session=False))
        _announce_refusals(uow, [(a, e) for a in appts for i, e in failed if i == a.id])
    settled = [a.id for a in appts if a.order_refused_reason is not None
               and a.id not in {i for i, _ in failed}]
    if settled:
        # an order placed after a refusal: the next refusal is news again
        session.execute(update(Appointment).where(Appointment.id.in_(settled))
                        .values(order_refused_reason=None)
                        .execution_options(synchronize_session=False))
    if placed:
        # the tables, not the mapped classes: bulk inserts, without the ORM's unit of work
        bulk_insert(session, cast(Table, Delivery.__table__), placed)
        bulk_insert(session, cast(Table, DeliveryEvent.__table__), history)
        bulk_insert(session, uow.platform.audit, audits)
        for d in placed:
            updates.append((DeliveryUpdatedData(
                id=d["id"], appointment_id=d["appointment_id"], patient_mrn=d["patient_mrn"],
                pump_serial=d["pump_serial"], center=d["center"], needed_by=d["needed_by"],
                status=d["status"], drugs=d["drugs"],
                history=[DeliveryHistoryEntry(at=now, status=DeliveryStatus.REQUESTED, reason=None)],
                therapy_id=d["therapy_id"], lot=None, beyond_use_at=None), d["id"]))
        uow.publish_many(orders)
        uow.publish_many(updates)
    return [d["id"] for d in placed], failed


def _announce_refusals(uow: UnitOfWork, refused: list[tuple[Appointment, DosingError]]) -> None:
    """Tell of each order refused (`hai.scheduling.order.refused`, an alert for the oncologist)
    once per reason: the sweep tries again every round (a corrected weight or dose lets it
    through), and a refusal already told for the same reason is not told again."""
    now = uow.now()
    events: list[tuple[OrderRefusedData, str | None]] = []
    for appt, error in refused:
        log.error("order.not_placed", appointment_id=appt.id, field=error.field,
                  error=error.message)
        if appt.order_refused_reason == error.message:
            continue
        uow.session.execute(update(Appointment).where(Appointment.id == appt.id)
                            .values(order_refused_reason=error.message)
                            .execution_options(synchronize_session=False))
        events.append((OrderRefusedData(
            appointment_id=appt.id, therapy_id=appt.therapy_id, patient_mrn=appt.patient_mrn,
            pump_serial=appt.pump_serial, center=appt.center, fill_type=appt.fill_type,
            due_at=appt.due_at, field=error.field, reason=error.message, refused_at=now,
        ), appt.pump_serial))
    if events:
        uow.publish_many(events)


@dataclass(frozen=True)
class ComputedFill:
    """The drugs of one chemo fill as scheduling would order them now, with what they rest on."""

    lines: list[DrugLine]
    weight: DosingWeight
    fill_volume_ml: float
    flow_ml_per_day: float
    flow_source: str


def compute_fill(therapy: Therapy, patient: Patient, pump: ImplantedPump, flows: dict[str, float],
                 settings: SchedulingSettings) -> ComputedFill:
    """The drug lines of the therapy's next chemo fill, checked against the label range and the
    hard limits; DosingError naming the field when it must not go."""
    dose = therapy.fudr_mg_per_kg_day or settings.fudr_default_mg_per_kg_day
    limits = hard_limits(settings)
    # the therapy's settings were checked when they were written; check them again, as the
    # amounts below, right before the order leaves (rows written before the limits existed)
    hard = hard_limit_problems(fudr_mg_per_kg_day=dose, dexamethasone_mg=therapy.dexamethasone_mg,
                               heparin_units=therapy.heparin_units, limits=limits)
    if hard:
        raise DosingError(*hard[0])
    if not in_label_range(dose, minimum=settings.fudr_label_min_mg_per_kg_day,
                          maximum=settings.fudr_label_max_mg_per_kg_day) \
            and not therapy.dose_override_reason:
        raise DosingError("fudr_mg_per_kg_day", f"{dose} mg/kg/day outside the label range "
                                                "without an oncologist's override")
    weight = dosing_weight_kg(actual_kg=patient.weight_kg, mode=therapy.dosing_weight,
                              height_cm=patient.height_cm, sex=patient.sex,
                              adjusted_threshold_pct=settings.adjusted_weight_threshold_pct)
    measured = flows.get(pump.serial_number)
    flow = measured if measured is not None else pump.labeled_flow_ml_per_day
    source = "latest measured" if measured is not None else "labeled"
    fill = therapy.fill_volume_ml or pump.reservoir_ml
    lines = order_drug_lines(
        dose_mg_per_kg_day=dose, weight=weight, fill_volume_ml=fill, flow_ml_per_day=flow,
        flow_source=source, dexamethasone_mg=therapy.dexamethasone_mg,
        heparin_units=therapy.heparin_units)
    check_order_hard_limits(lines, weight_kg=weight.kg, fill_volume_ml=fill, flow_ml_per_day=flow,
                            limits=limits)
    return ComputedFill(lines, weight, fill, flow, source)


def _order_for(appt: Appointment, therapy: Therapy | None, patient: Patient | None,
               pump: ImplantedPump | None, flows: dict[str, float],
               settings: SchedulingSettings) -> OrderRequestedData:
    if therapy is None or patient is None:
        raise DosingError("therapy_id", "therapy or patient missing")
    if pump is None:
        raise DosingError("pump_serial", "pump unknown to scheduling")
    computed = compute_fill(therapy, patient, pump, flows, settings)
    weight, fill, flow, lines = (computed.weight, computed.fill_volume_ml,
                                 computed.flow_ml_per_day, computed.lines)
    assert appt.delivery_id is not None
    return OrderRequestedData(
        order_id=appt.delivery_id,
        patient=OrderPatient(mrn=patient.mrn, given_name=patient.given_name,
                             family_name=patient.family_name, birth_date=patient.birth_date,
                             weight_kg=patient.weight_kg),
        pump=OrderPump(serial_number=pump.serial_number, model_code=pump.model_code,
                       reservoir_ml=pump.reservoir_ml, flow_ml_per_day=flow),
        fill_volume_ml=fill,
        infusion_days=round(fill / flow, 1),
        drugs=[OrderDrug(code=line.code, name=line.name, amount=line.amount,
                         unit=line.unit, basis=line.basis)
               for line in lines],
        diluent=diluent_text(fill),
        needed_by=appt.scheduled_for or appt.due_at,
        appointment_id=appt.id,
        center=appt.center, therapy_id=therapy.id, dosing_weight_kg=weight.kg,
        dose_override_by=therapy.dose_override_by,
        dose_override_reason=therapy.dose_override_reason,
    )


def cancel_open_orders(uow: UnitOfWork, *, therapy_id: str, actor: str, reason: str,
                       appointment_id: str | None = None) -> list[str]:
    """Cancel a therapy's open orders (or only those of one appointment) and tell the pharmacy
    (`order.cancelled`)."""
    session = uow.session
    stmt = select(Delivery).where(Delivery.therapy_id == therapy_id,
                                  Delivery.status.in_(OPEN_DELIVERY_STATUSES))
    if appointment_id is not None:
        stmt = stmt.where(Delivery.appointment_id == appointment_id)
    rows = list(session.scalars(stmt.with_for_update()))
    now = uow.now()
    for d in rows:
        d.status, d.updated_at = DeliveryStatus.CANCELLED, now
        session.add(DeliveryEvent(delivery_id=d.id, at=now, status=DeliveryStatus.CANCELLED,
                                  reason=reason,
                                  applied=True, source="scheduling", recorded_at=now))
        session.execute(update(Appointment).where(Appointment.delivery_id == d.id,
                                                  Appointment.status == AppointmentStatus.SCHEDULED)
                        .values(delivery_id=None).execution_options(synchronize_session=False))
        session.flush()
        uow.publish(OrderCancelledData.model_validate({**d.order, "reason": reason}), subject=d.id)
        uow.publish(_data(get_delivery(uow=uow, delivery_id=d.id)), subject=d.id)
        uow.audit(actor=actor, action="delivery.cancelled", entity_type="delivery",
                  entity_id=d.id, changes={"reason": reason})
    return [d.id for d in rows]


# ---------------------------------------------------------------- the chemo fill

def lock_for_fill(uow: UnitOfWork, delivery_id: str) -> Delivery | None:
    """The delivery a chemo fill names, locked so that a pharmacy status arriving at the same
    time is applied before or after the fill, never across it."""
    return uow.session.scalar(select(Delivery).where(Delivery.id == delivery_id).with_for_update())


def record_administration(uow: UnitOfWork, d: Delivery, *, refill_id: str,
                          performed_at: datetime, actor: str) -> None:
    """Link a delivery to the chemo fill that used it; a dispatched order becomes delivered
    (history, `delivery.updated`, audit), as a pharmacy status would make it."""
    session = uow.session
    now = uow.now()
    before = d.status
    d.administered_at, d.refill_id, d.updated_at = performed_at, refill_id, now
    if before == DeliveryStatus.DISPATCHED:
        d.status = DeliveryStatus.DELIVERED
        session.add(DeliveryEvent(delivery_id=d.id, at=performed_at, status=DeliveryStatus.DELIVERED,
                                  reason=f"administered: refill {refill_id}", applied=True,
                                  source="scheduling", recorded_at=now))
    session.flush()
    uow.publish(_data(get_delivery(uow=uow, delivery_id=d.id)), subject=d.id)
    uow.audit(actor=actor, action="delivery.administered", entity_type="delivery", entity_id=d.id,
              changes={"from": before, "to": d.status, "refill_id": refill_id,
                       "administered_at": performed_at})
    log.info("delivery.administered", delivery_id=d.id, refill_id=refill_id, from_status=before)


def withdraw_administration(uow: UnitOfWork, *, refill_id: str, actor: str, reason: str) -> list[str]:
    """Unlink the deliveries a refill entered in error had used (its status stays: the bag went
    where the pharmacy said); the next chemo fill may name the order again."""
    session = uow.session
    rows = list(session.scalars(select(Delivery).where(Delivery.refill_id == refill_id)))
    now = uow.now()
    for d in rows:
        before = d.administered_at
        d.administered_at, d.refill_id, d.updated_at = None, None, now
        session.flush()
        uow.publish(_data(get_delivery(uow=uow, delivery_id=d.id)), subject=d.id)
        uow.audit(actor=actor, action="delivery.administration_withdrawn", entity_type="delivery",
                  entity_id=d.id, changes={"refill_id": refill_id, "administered_at": before,
                                           "reason": reason})
    return [d.id for d in rows]


# ---------------------------------------------------------------- statuses from the pharmacy

def apply_status(uow: UnitOfWork, *, order_id: str, status: str, at: datetime,
                 reason: str | None, lot: str | None, beyond_use_at: datetime | None,
                 source: str, actor: str) -> tuple[DeliveryRead, Decision]:
    """Apply a pharmacy status: forward moves apply, a repeat changes nothing, a late one is
    only recorded in the history. Raises NotFound for an unknown order."""
    session = uow.session
    at = ensure_utc(at)
    beyond_use_at = ensure_utc(beyond_use_at) if beyond_use_at else None
    d = session.scalar(select(Delivery).where(Delivery.id == order_id).with_for_update())
    if d is None:
        raise NotFound(f"no delivery order {order_id}")
    decision = decide(d.status, status)
    now = uow.now()
    if decision == "duplicate":
        return get_delivery(uow=uow, delivery_id=d.id), decision
    if decision == "late":
        seen = session.scalar(select(DeliveryEvent.id).where(
            DeliveryEvent.delivery_id == d.id, DeliveryEvent.status == status,
            DeliveryEvent.at == at).limit(1))
        if seen is None:
            note = f"not applied: order already {d.status}"
            session.add(DeliveryEvent(delivery_id=d.id, at=at, status=status,
                                      reason=f"{note}; {reason}" if reason else note,
                                      applied=False, source=source, recorded_at=now))
            session.flush()
            log.info("delivery.status_late", delivery_id=d.id, status=status, current=d.status)
        return get_delivery(uow=uow, delivery_id=d.id), decision
    before = d.status
    d.status, d.updated_at = status, now
    if lot:
        d.lot = lot
    if beyond_use_at:
        d.beyond_use_at = beyond_use_at
    session.add(DeliveryEvent(delivery_id=d.id, at=at, status=status, reason=reason, applied=True,
                              source=source, recorded_at=now))
    session.flush()
    read = get_delivery(uow=uow, delivery_id=d.id)
    uow.publish(_data(read), subject=d.id)
    uow.audit(actor=actor, action="delivery.status", entity_type="delivery", entity_id=d.id,
              changes={"from": before, "to": status, "at": at, "reason": reason, "source": source})
    log.info("delivery.status_applied", delivery_id=d.id, from_status=before, to_status=status)
    return read, decision


def delivery_payloads(uow: UnitOfWork, rows: Sequence[Delivery], event: type[D]) -> list[D]:
    """Many deliveries as the event `event` carries them (one history query)."""
    history = _history(uow, [d.id for d in rows])
    return [_data(_read(d, history[d.id]), event) for d in rows]
