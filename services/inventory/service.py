"""Inventory's domain operations: catalogue, pump registration, lifecycle moves, recalls.

Each function works inside the caller's unit of work: it writes the change, its device
history, its audit entry and its outbox event in that one transaction; the caller commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

import structlog
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError

from services.inventory.lifecycle import INITIAL_STATUS, Move, MoveRefused, next_status
from services.inventory.models import DeviceHistory, Pump, PumpModel, Recall
from services.inventory.schemas import (
    HistoryEntry,
    ImplantRequest,
    PumpCreate,
    PumpFilters,
    PumpModelCreate,
    PumpModelRead,
    PumpRead,
    RecallCreate,
    RecallRead,
)
from services.inventory.udi import UdiError, gtin_is_valid, parse_udi, scanned_carrier
from shared.contracts.inventory import (
    PumpData,
    PumpExplantedData,
    PumpImplantedData,
    PumpRegisteredData,
    PumpStatusChangedData,
    RecalledImplant,
    RecallIssuedData,
)
from shared.contracts.scheduling import PatientCenterChangedData
from shared.contracts.vocabulary import PumpStatus
from shared.db import UnitOfWork, new_id
from shared.errors import Conflict, Invalid, NotFound
from shared.pagination import Page, PageParams, paginate
from shared.scoping import CenterScope
from shared.text import code_problem

log = structlog.get_logger(__name__)
P = TypeVar("P", bound=PumpData)


# --- catalogue -------------------------------------------------------------------------------

def list_models(*, uow: UnitOfWork, page: PageParams) -> Page[PumpModelRead]:
    """The catalogue of pump models."""
    return paginate(uow.session, select(PumpModel), keys=[PumpModel.code], params=page,
                    to_item=PumpModelRead.model_validate)


def create_model(*, uow: UnitOfWork, actor: str, data: PumpModelCreate) -> PumpModelRead:
    """Add a pump model to the catalogue; 409 when its code or GTIN is already known."""
    if not gtin_is_valid(data.gtin):
        raise Invalid("gtin", f"GTIN {data.gtin} has a wrong GS1 check digit")
    gtin = data.gtin.zfill(14)
    clash = uow.session.execute(
        select(PumpModel).where((PumpModel.code == data.code) | (PumpModel.gtin == gtin))
    ).scalars().first()
    if clash is not None:
        which = "code" if clash.code == data.code else "GTIN"
        raise Conflict(f"a pump model with this {which} already exists ({clash.code})")
    model = PumpModel(code=data.code, manufacturer=data.manufacturer, name=data.name, gtin=gtin,
                      reservoir_ml=data.reservoir_ml,
                      nominal_flow_ml_per_day=data.nominal_flow_ml_per_day, demo=False,
                      notes=data.notes, created_at=uow.now())
    uow.session.add(model)
    _flush_or_conflict(uow, f"pump model {data.code} already exists")
    uow.audit(actor=actor, action="pump_model.created", entity_type="pump_model",
              entity_id=model.code, changes=data.model_dump(mode="json"))
    return PumpModelRead.model_validate(model)


# --- pumps -----------------------------------------------------------------------------------

def register_pump(*, uow: UnitOfWork, actor: str, data: PumpCreate) -> PumpRead:
    """Register a received pump from its UDI or its fields; 409 when the serial is known."""
    model, serial, lot, expiry, gtin = _identify(uow, data)
    existing = uow.session.get(Pump, serial)
    if existing is not None:
        raise Conflict(f"pump {serial} is already registered (status {existing.status})",
                       current_status=existing.status)
    now = uow.now()
    pump = Pump(
        serial_number=serial, model_code=model.code, gtin=gtin, lot_number=lot,
        expiry_date=expiry, reservoir_ml=model.reservoir_ml,
        labeled_flow_ml_per_day=data.labeled_flow_ml_per_day or model.nominal_flow_ml_per_day,
        status=INITIAL_STATUS.value, location=data.location, created_at=now, updated_at=now,
        udi_aidc=scanned_carrier(data.udi),
    )
    uow.session.add(pump)
    _flush_or_conflict(uow, f"pump {serial} is already registered")
    details: dict[str, Any] = {"model_code": model.code, "lot_number": lot,
                               "expiry_date": expiry.isoformat(), "source": "udi" if data.udi else "fields"}
    if expiry < now.date():
        details["expired_on_receipt"] = True
    _record(uow, pump, actor=actor, action="register", from_status=None, details=details)
    uow.publish(_pump_data(pump, PumpRegisteredData), subject=serial)
    log.info("pump.registered", serial=serial, model=model.code)
    return PumpRead.model_validate(pump)


def get_pump(*, uow: UnitOfWork, serial: str) -> PumpRead:
    """One pump by serial number; 404 when unknown."""
    return PumpRead.model_validate(_pump_or_404(uow, serial))


def list_pumps(*, uow: UnitOfWork, filters: PumpFilters, page: PageParams) -> Page[PumpRead]:
    """Pumps matching every given filter, by serial number."""
    stmt: Select[Any] = select(Pump)
    if filters.status is not None:
        stmt = stmt.where(Pump.status == filters.status.value)
    if filters.model_code is not None:
        stmt = stmt.where(Pump.model_code == filters.model_code)
    if filters.lot_number is not None:
        stmt = stmt.where(Pump.lot_number == filters.lot_number)
    if filters.patient_mrn is not None:
        stmt = stmt.where(Pump.patient_mrn == filters.patient_mrn)
    if filters.expiring_before is not None:
        stmt = stmt.where(Pump.expiry_date < filters.expiring_before)
    return paginate(uow.session, stmt, keys=[Pump.serial_number], params=page,
                    to_item=PumpRead.model_validate)


def history(*, uow: UnitOfWork, serial: str, page: PageParams) -> Page[HistoryEntry]:
    """A pump's device history, oldest first; 404 when the pump is unknown."""
    _pump_or_404(uow, serial)
    stmt = select(DeviceHistory).where(DeviceHistory.serial_number == serial)
    return paginate(uow.session, stmt, keys=[DeviceHistory.id], params=page,
                    to_item=HistoryEntry.model_validate)


def implant(*, uow: UnitOfWork, actor: str, serial: str, data: ImplantRequest) -> PumpRead:
    """Record a pump implanted in a patient at a center (now or in the past)."""
    uow.centers.require(data.center)
    now = uow.now()
    if data.implanted_at > now:
        raise Invalid("implanted_at", "lies in the future")
    pump = _pump_or_404(uow, serial, lock=True)
    to_status = _move(pump, Move.IMPLANT)
    if data.implanted_at.date() > pump.expiry_date:
        raise Conflict(
            f"pump {serial} expired on {pump.expiry_date.isoformat()} and cannot be implanted "
            f"(status {pump.status})", current_status=pump.status, expired=True)
    other = uow.session.execute(
        select(Pump.serial_number).where(Pump.patient_mrn == data.patient_mrn,
                                         Pump.status == PumpStatus.IMPLANTED.value)
    ).scalar()
    if other is not None:
        raise Conflict(f"the patient already has an implanted pump ({other}); explant it first "
                       f"(pump {serial} is {pump.status})", current_status=pump.status)
    from_status = pump.status
    pump.status = to_status.value
    pump.patient_mrn = data.patient_mrn
    pump.center = data.center
    pump.surgeon = data.surgeon
    pump.implanted_at = data.implanted_at
    pump.explanted_at = None
    pump.explant_reason = None
    pump.updated_at = now
    _flush_or_conflict(uow, "the patient already has an implanted pump")
    _record(uow, pump, actor=actor, action=Move.IMPLANT.value, from_status=from_status,
            details={"patient_mrn": data.patient_mrn, "center": data.center,
                     "surgeon": data.surgeon, "implanted_at": data.implanted_at.isoformat()})
    uow.publish(_pump_data(pump, PumpImplantedData), subject=serial)
    log.info("pump.implanted", serial=serial)
    return PumpRead.model_validate(pump)


def explant(*, uow: UnitOfWork, actor: str, serial: str, explanted_at: datetime | None,
            reason: str) -> PumpRead:
    """Record a pump removed from its patient, with the reason."""
    now = uow.now()
    when = explanted_at or now
    if when > now:
        raise Invalid("explanted_at", "lies in the future")
    pump = _pump_or_404(uow, serial, lock=True)
    to_status = _move(pump, Move.EXPLANT)
    if pump.implanted_at is not None and when < pump.implanted_at:
        raise Invalid("explanted_at", "lies before the pump was implanted")
    from_status = pump.status
    pump.status = to_status.value
    pump.explanted_at = when
    pump.explant_reason = reason
    pump.updated_at = now
    _record(uow, pump, actor=actor, action=Move.EXPLANT.value, from_status=from_status,
            details={"patient_mrn": pump.patient_mrn, "reason": reason,
                     "explanted_at": when.isoformat()})
    uow.publish(PumpExplantedData(
        serial_number=serial, patient_mrn=pump.patient_mrn or "", explanted_at=when, reason=reason,
        center=pump.center,
    ), subject=serial)
    log.info("pump.explanted", serial=serial)
    return PumpRead.model_validate(pump)


def change_status(*, uow: UnitOfWork, actor: str, serial: str, move: Move,
                  reason: str | None) -> PumpRead:
    """Quarantine, release or retire a pump (anything else is a lifecycle move of its own)."""
    if move not in (Move.QUARANTINE, Move.RELEASE, Move.RETIRE):
        raise ValueError(f"{move} is not a plain status change")
    pump = _pump_or_404(uow, serial, lock=True)
    _apply_status_change(uow, pump, actor=actor, move=move, reason=reason)
    return PumpRead.model_validate(pump)


# --- recalls ---------------------------------------------------------------------------------

def issue_recall(*, uow: UnitOfWork, actor: str, data: RecallCreate) -> RecallRead:
    """Quarantine the stock of the recalled lots and name the implanted pumps, in one transaction."""
    if uow.session.get(PumpModel, data.model_code) is None:
        raise Invalid("model_code", f"no pump model {data.model_code!r} in the catalogue")
    lots = sorted(set(data.lot_numbers))
    recall_id = new_id()
    pumps = uow.session.execute(
        select(Pump).where(Pump.model_code == data.model_code, Pump.lot_number.in_(lots))
        .order_by(Pump.serial_number).with_for_update()
    ).scalars().all()
    quarantined: list[str] = []
    already: list[str] = []
    implanted: list[RecalledImplant] = []
    for pump in pumps:
        if pump.status == PumpStatus.IN_STOCK.value:
            _apply_status_change(uow, pump, actor=actor, move=Move.QUARANTINE,
                                 reason=f"recall {recall_id}: {data.reason}",
                                 extra={"recall_id": recall_id})
            quarantined.append(pump.serial_number)
        elif pump.status == PumpStatus.QUARANTINED.value:
            already.append(pump.serial_number)
        elif pump.status == PumpStatus.IMPLANTED.value:
            implanted.append(RecalledImplant(serial_number=pump.serial_number,
                                             patient_mrn=pump.patient_mrn or "",
                                             center=pump.center))
    recall = Recall(id=recall_id, model_code=data.model_code, lot_numbers=lots, reason=data.reason,
                    issued_at=uow.now(), issued_by=actor, quarantined=quarantined,
                    implanted=[i.model_dump() for i in implanted], already_quarantined=already)
    uow.session.add(recall)
    uow.audit(actor=actor, action="recall.issued", entity_type="recall", entity_id=recall_id,
              changes={"model_code": data.model_code, "lot_numbers": lots, "reason": data.reason,
                       "quarantined": quarantined,
                       "implanted": [i.serial_number for i in implanted]})
    uow.publish(RecallIssuedData(
        recall_id=recall_id, model_code=data.model_code, lot_numbers=lots, reason=data.reason,
        quarantined=quarantined, implanted=implanted, already_quarantined=already,
    ), subject=recall_id)
    log.info("recall.issued", recall_id=recall_id, quarantined=len(quarantined),
             implanted=len(implanted))
    return _recall_read(recall, uow.centers)


def get_recall(*, uow: UnitOfWork, recall_id: str) -> RecallRead:
    """One recall; 404 when unknown."""
    recall = uow.session.get(Recall, recall_id)
    if recall is None:
        raise NotFound(f"no recall {recall_id}")
    return _recall_read(recall, uow.centers)


def list_recalls(*, uow: UnitOfWork, page: PageParams) -> Page[RecallRead]:
    """Every recall, newest first."""
    return paginate(uow.session, select(Recall), keys=[Recall.issued_at, Recall.id], params=page,
                    to_item=lambda r: _recall_read(r, uow.centers), descending=True)


# --- helpers ---------------------------------------------------------------------------------

def _identify(uow: UnitOfWork, data: PumpCreate) -> tuple[PumpModel, str, str | None, Any, str | None]:
    """The model, serial, lot, expiry and GTIN of a registration, from its UDI or its fields."""
    fields = {"serial_number": data.serial_number, "model_code": data.model_code,
              "lot_number": data.lot_number, "expiry_date": data.expiry_date}
    if data.udi is not None:
        given = [name for name, value in fields.items() if value is not None]
        if given:
            raise Invalid(given[0], "give either `udi` or the fields, not both")
        try:
            parsed = parse_udi(data.udi)
        except UdiError as exc:
            first = exc.problems[0]
            err = Invalid(first.field, first.message)
            err.errors = [{"field": p.field, "message": p.message} for p in exc.problems]
            err.detail = "; ".join(f"{p.field}: {p.message}" for p in exc.problems)
            raise err from exc
        for field, value in (("serial_number", parsed.serial_number),
                             ("lot_number", parsed.lot_number)):
            problem = code_problem(value) if value is not None else None
            if problem:
                raise Invalid(f"udi.{field}", f"{field.replace('_', ' ')} {problem}")
        model = uow.session.execute(
            select(PumpModel).where(PumpModel.gtin == parsed.gtin)).scalars().first()
        if model is None:
            raise Invalid("udi.gtin", f"no pump model in the catalogue has GTIN {parsed.gtin}")
        return model, parsed.serial_number, parsed.lot_number, parsed.expiry_date, parsed.gtin
    missing = [name for name, value in fields.items() if value is None]
    if missing:
        err = Invalid(missing[0], "required (or give `udi`)")
        err.errors = [{"field": m, "message": "required (or give `udi`)"} for m in missing]
        err.detail = "; ".join(f"{m}: required (or give `udi`)" for m in missing)
        raise err
    assert data.model_code is not None and data.serial_number is not None
    found = uow.session.get(PumpModel, data.model_code)
    if found is None:
        raise Invalid("model_code", f"no pump model {data.model_code!r} in the catalogue")
    return found, data.serial_number, data.lot_number, data.expiry_date, found.gtin


def _pump_or_404(uow: UnitOfWork, serial: str, *, lock: bool = False) -> Pump:
    stmt = select(Pump).where(Pump.serial_number == serial)
    if lock:
        stmt = stmt.with_for_update()
    pump = uow.session.execute(stmt).scalars().first()
    if pump is None:
        raise NotFound(f"no pump with serial number {serial}")
    return pump


def _move(pump: Pump, move: Move) -> PumpStatus:
    try:
        return next_status(pump.status, move)
    except MoveRefused as exc:
        raise Conflict(f"pump {pump.serial_number} is {pump.status}: {exc}",
                       current_status=pump.status) from exc


def _apply_status_change(uow: UnitOfWork, pump: Pump, *, actor: str, move: Move,
                         reason: str | None, extra: dict[str, Any] | None = None) -> None:
    to_status = _move(pump, move)
    from_status = pump.status
    pump.status = to_status.value
    pump.updated_at = uow.now()
    _record(uow, pump, actor=actor, action=move.value, from_status=from_status,
            details={"reason": reason, **(extra or {})})
    uow.publish(PumpStatusChangedData(
        serial_number=pump.serial_number, from_status=from_status, to_status=to_status.value,
        reason=reason, center=pump.center, **(extra or {})), subject=pump.serial_number)
    log.info("pump.status_changed", serial=pump.serial_number, move=move.value,
             to_status=to_status.value)


def _record(uow: UnitOfWork, pump: Pump, *, actor: str, action: str, from_status: str | None,
            details: dict[str, Any]) -> None:
    """Write the device history row and the audit entry of one move."""
    at = uow.now()
    clean = {k: v for k, v in details.items() if v is not None}
    uow.session.add(DeviceHistory(serial_number=pump.serial_number, at=at, actor=actor,
                                  action=action, from_status=from_status, to_status=pump.status,
                                  details=clean))
    uow.audit(actor=actor, action=f"pump.{action}", entity_type="pump",
              entity_id=pump.serial_number,
              changes={"from_status": from_status, "to_status": pump.status, **clean})


def _flush_or_conflict(uow: UnitOfWork, detail: str) -> None:
    """Flush now so a unique constraint lost to a concurrent request is a 409, not a 500."""
    try:
        uow.session.flush()
    except IntegrityError as exc:
        uow.session.rollback()
        raise Conflict(detail) from exc


def _pump_data(pump: Pump, event: type[P]) -> P:
    """The pump as the event `event` (registered, implanted) carries it."""
    return event(
        serial_number=pump.serial_number, model_code=pump.model_code, gtin=pump.gtin,
        lot_number=pump.lot_number, expiry_date=pump.expiry_date, reservoir_ml=pump.reservoir_ml,
        labeled_flow_ml_per_day=pump.labeled_flow_ml_per_day, status=pump.status,
        location=pump.location, patient_mrn=pump.patient_mrn, center=pump.center,
        implanted_at=pump.implanted_at, explanted_at=pump.explanted_at,
        created_at=pump.created_at, updated_at=pump.updated_at, surgeon=pump.surgeon,
    )


def _recall_read(recall: Recall, centers: CenterScope) -> RecallRead:
    """A recall as `centers` may see it: every recall is the consortium's, but the implanted
    pumps it names (their patients) only those of the caller's centres."""
    return RecallRead(
        recall_id=recall.id, model_code=recall.model_code, lot_numbers=list(recall.lot_numbers),
        reason=recall.reason, issued_at=recall.issued_at, issued_by=recall.issued_by,
        quarantined=list(recall.quarantined),
        implanted=[RecalledImplant.model_validate(i) for i in recall.implanted
                   if centers.covers(i.get("center"))],
        already_quarantined=list(recall.already_quarantined or []),
    )


def on_patient_center_changed(uow: UnitOfWork, data: PatientCenterChangedData) -> list[str]:
    """A patient transferred (scheduling's `patient.center_changed`): their implanted pumps take
    the new centre, each with a line in its device history. A repeat finds them there already;
    a transfer older (by `changed_at`) than one a pump has taken already changes nothing.
    Returns the serials moved."""
    pumps = uow.session.scalars(select(Pump).where(
        Pump.patient_mrn == data.patient_mrn, Pump.status == PumpStatus.IMPLANTED.value,
        Pump.center != data.center).order_by(Pump.serial_number).with_for_update()).all()
    moved = []
    for pump in pumps:
        last = uow.session.scalars(select(DeviceHistory.details).where(
            DeviceHistory.serial_number == pump.serial_number,
            DeviceHistory.action == CENTER_CHANGED).order_by(DeviceHistory.id.desc()).limit(1)
        ).first()
        if last and datetime.fromisoformat(last["changed_at"]) >= data.changed_at:
            continue
        from_center = pump.center
        pump.center, pump.updated_at = data.center, uow.now()
        _record(uow, pump, actor=data.changed_by, action=CENTER_CHANGED,
                from_status=pump.status,
                details={"from_center": from_center, "center": data.center,
                         "changed_at": data.changed_at.isoformat(), "source": "scheduling"})
        moved.append(pump.serial_number)
    uow.session.flush()
    return moved


CENTER_CHANGED = "center_changed"  # a device history action beside the lifecycle's moves
