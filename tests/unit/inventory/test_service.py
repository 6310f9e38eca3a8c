"""Inventory's service functions on a real SQLite database (no HTTP, no broker)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from services.inventory import service
from services.inventory.app import bootstrap
from services.inventory.catalogue import DEMO_CATALOGUE
from services.inventory.lifecycle import Move, MoveRefused, PumpStatus, next_status
from services.inventory.models import DeviceHistory, PumpModel
from services.inventory.schemas import (
    ImplantRequest,
    PumpCreate,
    PumpFilters,
    PumpModelCreate,
    RecallCreate,
)
from shared.clock import MovableClock
from shared.errors import Conflict, Invalid, NotFound
from shared.messaging.inproc import InProcessBus
from shared.migrations import upgrade
from shared.pagination import PageParams
from shared.runtime import ServiceRuntime
from tests.factories import T0
from tests.helpers import test_settings as make_settings

MODEL = DEMO_CATALOGUE[0].code
_serials = itertools.count(1)


@pytest.fixture
def rt(tmp_path: Path) -> ServiceRuntime:
    """Inventory on a SQLite database of this test's own."""
    cfg = make_settings(tmp_path)
    upgrade("inventory", cfg.inventory_database_url)
    return bootstrap(cfg, clock=MovableClock(T0), bus=InProcessBus())


def run(rt: ServiceRuntime, fn: Callable[..., Any], **kwargs: Any) -> Any:
    """Call a service function in its own committed unit of work."""
    with rt.uow_factory() as uow:
        result = fn(uow=uow, **kwargs)
        uow.commit()
        return result


def new_serial() -> str:
    return f"UT{next(_serials):06d}"


def register(rt: ServiceRuntime, serial: str | None = None, *, lot: str = "L1",
             expiry: date = date(2028, 12, 31), model: str = MODEL) -> str:
    serial = serial or new_serial()
    run(rt, service.register_pump, actor="bio", data=PumpCreate(
        serial_number=serial, model_code=model, lot_number=lot, expiry_date=expiry))
    return serial


def events(rt: ServiceRuntime, subject: str) -> list[dict[str, Any]]:
    outbox = rt.platform.outbox
    with rt.uow_factory() as uow:
        bodies = uow.session.execute(select(outbox.c.body).order_by(outbox.c.seq)).scalars()
        return [e for e in map(json.loads, bodies) if e.get("subject") == subject]


def implant_req(mrn: str, when: datetime = T0 - timedelta(days=1)) -> ImplantRequest:
    return ImplantRequest(patient_mrn=mrn, implanted_at=when, center="C1", surgeon="Dr S")


def test_bootstrap_seeds_the_demo_catalogue_once(rt: ServiceRuntime) -> None:
    bootstrap(rt.settings, clock=rt.clock, bus=InProcessBus(), engine=rt.engine)
    with rt.uow_factory() as uow:
        count = uow.session.execute(select(func.count()).select_from(PumpModel)).scalar()
    assert count == len(DEMO_CATALOGUE)
    models = run(rt, service.list_models, page=PageParams()).items
    assert {m.code for m in models} >= {e.code for e in DEMO_CATALOGUE}
    assert all(m.demo and m.reservoir_ml == 30.0 and "verify" in (m.notes or "") for m in models)


def test_register_from_udi_takes_model_lot_expiry_and_nominal_flow(rt: ServiceRuntime) -> None:
    pump = run(rt, service.register_pump, actor="bio", data=PumpCreate(
        udi="(01)00812345000023(17)290630(10)LOTX(21)UDI-1", location="shelf 3"))
    assert (pump.model_code, pump.lot_number, pump.expiry_date) == (
        "DEMO-CODMAN-3000", "LOTX", date(2029, 6, 30))
    assert pump.status == "in_stock" and pump.labeled_flow_ml_per_day == 1.0
    assert pump.reservoir_ml == 30.0 and pump.location == "shelf 3"
    [event] = events(rt, "UDI-1")
    assert event["type"] == "hai.inventory.pump.registered"
    assert event["data"]["status"] == "in_stock"


def test_register_refuses_a_known_serial(rt: ServiceRuntime) -> None:
    serial = register(rt)
    with pytest.raises(Conflict) as err:
        register(rt, serial)
    assert "in_stock" in err.value.detail


def test_register_refuses_unknown_gtin_and_names_missing_fields(rt: ServiceRuntime) -> None:
    with pytest.raises(Invalid) as err:
        run(rt, service.register_pump, actor="bio",
            data=PumpCreate(udi="(01)00812345000047(17)290630(21)X1"))
    assert err.value.field == "udi.gtin"
    with pytest.raises(Invalid) as err:
        run(rt, service.register_pump, actor="bio", data=PumpCreate(serial_number="X2"))
    assert [e["field"] for e in err.value.errors or []] == ["model_code", "lot_number",
                                                            "expiry_date"]
    with pytest.raises(Invalid) as err:
        run(rt, service.register_pump, actor="bio",
            data=PumpCreate(udi="(01)00812345000016(17)290630(21)X3", serial_number="X3"))
    assert err.value.field == "serial_number"


def test_an_expired_pump_is_registered_but_never_implanted(rt: ServiceRuntime) -> None:
    serial = register(rt, expiry=date(2026, 1, 31))
    with pytest.raises(Conflict) as err:
        run(rt, service.implant, actor="onc", serial=serial, data=implant_req("MRN-EXP"))
    assert "expired" in err.value.detail and "in_stock" in err.value.detail
    # documenting an old implant, done while the pump was still good, is allowed
    pump = run(rt, service.implant, actor="onc", serial=serial,
               data=implant_req("MRN-EXP", datetime(2026, 1, 10, tzinfo=UTC)))
    assert pump.status == "implanted"


def test_implant_in_the_future_is_invalid(rt: ServiceRuntime) -> None:
    serial = register(rt)
    with pytest.raises(Invalid) as err:
        run(rt, service.implant, actor="onc", serial=serial,
            data=implant_req("MRN-F", T0 + timedelta(minutes=1)))
    assert err.value.field == "implanted_at"


def test_one_implanted_pump_per_patient(rt: ServiceRuntime) -> None:
    first, second = register(rt), register(rt)
    run(rt, service.implant, actor="onc", serial=first, data=implant_req("MRN-TWO"))
    with pytest.raises(Conflict) as err:
        run(rt, service.implant, actor="onc", serial=second, data=implant_req("MRN-TWO"))
    assert first in err.value.detail
    run(rt, service.explant, actor="onc", serial=first, explanted_at=None, reason="infection")
    pump = run(rt, service.implant, actor="onc", serial=second, data=implant_req("MRN-TWO"))
    assert pump.patient_mrn == "MRN-TWO"


def test_implant_records_center_history_and_event(rt: ServiceRuntime) -> None:
    serial = register(rt)
    pump = run(rt, service.implant, actor="dr-onc", serial=serial, data=implant_req("MRN-IMP"))
    assert (pump.center, pump.surgeon, pump.patient_mrn) == ("C1", "Dr S", "MRN-IMP")
    implanted = events(rt, serial)[-1]
    assert implanted["type"] == "hai.inventory.pump.implanted"
    assert implanted["data"]["center"] == "C1"
    assert implanted["data"]["reservoir_ml"] == 30.0
    assert implanted["data"]["labeled_flow_ml_per_day"] == 1.0
    entries = run(rt, service.history, serial=serial, page=PageParams()).items
    assert [(e.action, e.from_status, e.to_status, e.actor) for e in entries] == [
        ("register", None, "in_stock", "bio"), ("implant", "in_stock", "implanted", "dr-onc")]
    assert entries[1].details["center"] == "C1"


def test_explant_checks_its_time_and_announces(rt: ServiceRuntime) -> None:
    serial = register(rt)
    with pytest.raises(Conflict) as err:
        run(rt, service.explant, actor="onc", serial=serial, explanted_at=None, reason="x")
    assert "in_stock" in err.value.detail
    run(rt, service.implant, actor="onc", serial=serial, data=implant_req("MRN-EX"))
    with pytest.raises(Invalid):
        run(rt, service.explant, actor="onc", serial=serial,
            explanted_at=T0 - timedelta(days=3), reason="before implant")
    pump = run(rt, service.explant, actor="onc", serial=serial, explanted_at=None,
               reason="pocket infection")
    assert pump.status == "explanted" and pump.explant_reason == "pocket infection"
    last = events(rt, serial)[-1]
    assert last["type"] == "hai.inventory.pump.explanted"
    assert last["data"] == {"serial_number": serial, "patient_mrn": "MRN-EX",
                            "explanted_at": T0.isoformat().replace("+00:00", "Z"),
                            "reason": "pocket infection", "center": "C1"}


def test_unknown_pump_is_not_found(rt: ServiceRuntime) -> None:
    with pytest.raises(NotFound):
        run(rt, service.change_status, actor="bio", serial="NOPE", move=Move.RETIRE, reason="x")


def test_recall_quarantines_stock_and_names_implants(rt: ServiceRuntime) -> None:
    stock = [register(rt, lot="RC-1") for _ in range(3)]
    other_lot = register(rt, lot="RC-OTHER")
    implanted = register(rt, lot="RC-2")
    run(rt, service.implant, actor="onc", serial=implanted, data=implant_req("MRN-RC"))
    run(rt, service.change_status, actor="bio", serial=stock[2], move=Move.QUARANTINE,
        reason="dented box")
    recall = run(rt, service.issue_recall, actor="bio", data=RecallCreate(
        model_code=MODEL, lot_numbers=["RC-1", "RC-2"], reason="fast flow"))
    assert recall.quarantined == stock[:2]
    assert recall.already_quarantined == [stock[2]]
    assert [(i.serial_number, i.patient_mrn, i.center) for i in recall.implanted] == [
        (implanted, "MRN-RC", "C1")]
    assert run(rt, service.get_pump, serial=other_lot).status == "in_stock"
    issued = events(rt, recall.recall_id)
    assert [e["type"] for e in issued] == ["hai.inventory.recall.issued"]
    assert issued[0]["data"]["implanted"][0]["center"] == "C1"
    moved = events(rt, stock[0])[-1]
    assert moved["type"] == "hai.inventory.pump.status_changed"
    assert moved["data"]["recall_id"] == recall.recall_id
    assert run(rt, service.get_recall, recall_id=recall.recall_id) == recall
    assert run(rt, service.list_recalls, page=PageParams()).items[0].recall_id == recall.recall_id


def test_recall_of_unknown_model_is_invalid(rt: ServiceRuntime) -> None:
    with pytest.raises(Invalid):
        run(rt, service.issue_recall, actor="bio",
            data=RecallCreate(model_code="NOPE", lot_numbers=["1"], reason="x"))


def test_list_filters_and_pages(rt: ServiceRuntime) -> None:
    serials = [register(rt, lot="PAGE-LOT", expiry=date(2027, 1, d)) for d in range(1, 8)]
    page1 = run(rt, service.list_pumps, filters=PumpFilters(lot_number="PAGE-LOT"),
                page=PageParams(limit=4))
    page2 = run(rt, service.list_pumps, filters=PumpFilters(lot_number="PAGE-LOT"),
                page=PageParams(limit=4, cursor=page1.next_cursor))
    assert [p.serial_number for p in page1.items + page2.items] == serials
    assert page2.next_cursor is None
    soon = run(rt, service.list_pumps, filters=PumpFilters(
        lot_number="PAGE-LOT", expiring_before=date(2027, 1, 3)), page=PageParams())
    assert [p.serial_number for p in soon.items] == serials[:2]
    quarantined = run(rt, service.list_pumps, filters=PumpFilters(
        lot_number="PAGE-LOT", status=PumpStatus.QUARANTINED), page=PageParams())
    assert quarantined.items == []


def test_create_model_checks_gtin_and_duplicates(rt: ServiceRuntime) -> None:
    data = PumpModelCreate(code="REAL-1", manufacturer="M", name="N", gtin="00812345000047",
                           reservoir_ml=30, nominal_flow_ml_per_day=0.8)
    created = run(rt, service.create_model, actor="admin", data=data)
    assert created.gtin == "00812345000047" and not created.demo
    with pytest.raises(Conflict):
        run(rt, service.create_model, actor="admin", data=data)
    with pytest.raises(Invalid):
        run(rt, service.create_model, actor="admin",
            data=data.model_copy(update={"code": "REAL-2", "gtin": "00812345000048"}))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(list(Move)), max_size=12))
def test_no_sequence_of_moves_stores_a_forbidden_status_or_history(
        rt: ServiceRuntime, moves: list[Move]) -> None:
    serial = register(rt)
    mrn = f"MRN-{serial}"
    expected = PumpStatus.IN_STOCK
    for move in moves:
        try:
            after = next_status(expected, move)
        except MoveRefused:
            after = None
        try:
            if move is Move.IMPLANT:
                run(rt, service.implant, actor="p", serial=serial, data=implant_req(mrn))
            elif move is Move.EXPLANT:
                run(rt, service.explant, actor="p", serial=serial, explanted_at=None, reason="r")
            else:
                run(rt, service.change_status, actor="p", serial=serial, move=move, reason="r")
        except Conflict as err:
            assert after is None, f"{move} refused from {expected}"
            assert expected.value in err.detail
            assert err.extra["current_status"] == expected.value
        else:
            assert after is not None, f"{move} accepted from {expected}"
            expected = after
    assert run(rt, service.get_pump, serial=serial).status == expected
    with rt.uow_factory() as uow:
        rows = uow.session.execute(select(DeviceHistory).where(
            DeviceHistory.serial_number == serial).order_by(DeviceHistory.id)).scalars().all()
        chain = [(r.from_status, r.action, r.to_status) for r in rows]
    assert chain[0] == (None, "register", "in_stock")
    for (_, _, to), (frm, action, nxt) in itertools.pairwise(chain):
        assert frm == to
        assert next_status(frm, action) == nxt
    assert len(events(rt, serial)) == len(chain)
