"""The implanted-pump read model: the pumps inventory announces implanted, explanted or in
another status (scheduling keeps only what it needs to schedule and to compute flow)."""

from __future__ import annotations

import structlog
from sqlalchemy import select

from services.scheduling.models import ImplantedPump, Therapy
from services.scheduling.settings import SchedulingSettings
from services.scheduling.therapies import stop_therapy
from shared.contracts.inventory import PumpData, PumpExplantedData, PumpStatusChangedData
from shared.contracts.vocabulary import OPEN_THERAPY_STATUSES, PumpStatus
from shared.db import UnitOfWork

log = structlog.get_logger(__name__)


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
    pump.lot_number = data.lot_number
    pump.reservoir_ml = data.reservoir_ml
    pump.labeled_flow_ml_per_day = data.labeled_flow_ml_per_day
    pump.status = PumpStatus.IMPLANTED
    pump.implanted_at = data.implanted_at
    pump.explanted_at = None
    pump.updated_at = uow.now()
    uow.session.flush()
    log.info("pump.implanted_learnt", pump_serial=data.serial_number)


def on_pump_explanted(uow: UnitOfWork, data: PumpExplantedData, *, settings: SchedulingSettings) -> None:
    """Forget an explanted pump: its open therapies stop (their appointments and orders go)."""
    pump = uow.session.get(ImplantedPump, data.serial_number)
    if pump is None:
        return
    if pump.implanted_at is not None and data.explanted_at < pump.implanted_at:
        return  # the explant of an earlier implant, arriving late
    pump.status = PumpStatus.EXPLANTED
    pump.explanted_at = data.explanted_at
    pump.updated_at = uow.now()
    therapies = uow.session.scalars(select(Therapy).where(
        Therapy.pump_serial == data.serial_number, Therapy.status.in_(OPEN_THERAPY_STATUSES))).all()
    for therapy in therapies:
        stop_therapy(uow, therapy, actor="inventory", reason="pump explanted", settings=settings)
    uow.session.flush()
    log.info("pump.explanted_learnt", pump_serial=data.serial_number, therapies_stopped=len(therapies))


def on_pump_status_changed(uow: UnitOfWork, data: PumpStatusChangedData) -> None:
    """Keep the read model's status in step (only for pumps scheduling knows)."""
    pump = uow.session.get(ImplantedPump, data.serial_number)
    if pump is None or data.to_status in (PumpStatus.IMPLANTED, PumpStatus.EXPLANTED):
        return  # implant and explant come with their own events and details
    pump.status = data.to_status
    pump.updated_at = uow.now()
