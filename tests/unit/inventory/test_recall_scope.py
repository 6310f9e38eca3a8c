"""A recall names a model and its lots: pumps of another model that share a lot number are not
recalled (lot numbers are the manufacturer's, and two models may well use the same one)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from services.inventory import service
from services.inventory.app import bootstrap
from services.inventory.catalogue import DEMO_CATALOGUE
from services.inventory.lifecycle import Move
from services.inventory.schemas import ImplantRequest, PumpCreate, RecallCreate
from shared.clock import MovableClock
from shared.messaging.inproc import InProcessBus
from shared.migrations import upgrade
from shared.runtime import ServiceRuntime
from tests.factories import T0
from tests.helpers import test_settings as make_settings

RECALLED, OTHER = DEMO_CATALOGUE[0].code, DEMO_CATALOGUE[1].code


def _runtime(tmp_path: Path) -> ServiceRuntime:
    cfg = make_settings(tmp_path)
    upgrade("inventory", cfg.inventory_database_url)
    return bootstrap(cfg, clock=MovableClock(T0), bus=InProcessBus())


def _register(rt: ServiceRuntime, serial: str, model: str, lot: str) -> None:
    with rt.uow_factory.begin() as uow:
        service.register_pump(uow=uow, actor="bio", data=PumpCreate(
            serial_number=serial, model_code=model, lot_number=lot, expiry_date=date(2028, 12, 31)))


def test_a_recall_touches_only_the_given_models_lots(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    _register(rt, "R-STOCK", RECALLED, "LOT-7")
    _register(rt, "R-IMPL", RECALLED, "LOT-7")
    _register(rt, "O-STOCK", OTHER, "LOT-7")
    _register(rt, "O-IMPL", OTHER, "LOT-7")
    _register(rt, "O-QUAR", OTHER, "LOT-7")
    with rt.uow_factory.begin() as uow:
        for serial, mrn in (("R-IMPL", "MRN-R"), ("O-IMPL", "MRN-O")):
            service.implant(uow=uow, actor="onc", serial=serial, data=ImplantRequest(
                patient_mrn=mrn, implanted_at=T0 - timedelta(days=1), center="C1"))
        service.change_status(uow=uow, actor="bio", serial="O-QUAR",
                              move=Move.QUARANTINE, reason="dented box")
    with rt.uow_factory.begin() as uow:
        recall = service.issue_recall(uow=uow, actor="bio", data=RecallCreate(
            model_code=RECALLED, lot_numbers=["LOT-7"], reason="fast flow"))
    assert recall.quarantined == ["R-STOCK"]
    assert [i.serial_number for i in recall.implanted] == ["R-IMPL"]
    assert recall.already_quarantined == []
    with rt.uow_factory() as uow:
        assert service.get_pump(uow=uow, serial="O-STOCK").status == "in_stock"
        assert service.get_pump(uow=uow, serial="O-IMPL").status == "implanted"
