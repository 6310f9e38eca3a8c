"""A recall and an implant of the same pump at the same moment, on PostgreSQL with two real
transactions: the recall must lock the lots' pumps, so that an implant committed while the recall
waits is seen by it (the patient is named in the recall) and never overwritten by a quarantine.
The interleaving is forced: the implant holds its transaction open until the recall is seen
waiting on a lock, then commits."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from services.inventory import service
from services.inventory.catalogue import DEMO_CATALOGUE
from services.inventory.schemas import ImplantRequest, PumpCreate
from shared.clock import MovableClock
from shared.messaging.inproc import InProcessBus
from tests.factories import T0
from tests.helpers import auth, start_service, wait_until
from tests.helpers import test_settings as make_settings

MODEL = DEMO_CATALOGUE[0].code
BIOMED = auth("biomed", sub="bea-biomed")
NURSE = auth("nurse")


def _lock_waiters(engine: Any, database: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND wait_event_type = 'Lock'"
        ), {"db": database}).scalar_one())


def test_a_pump_implanted_while_a_recall_runs_is_named_not_quarantined(pg_database,
                                                                        tmp_path: Path) -> None:
    settings = make_settings(tmp_path, inventory_database_url=pg_database("recall_race"))
    h = start_service("inventory", settings, clock=MovableClock(T0), bus=InProcessBus())
    engine = h.runtime.engine
    try:
        with h.runtime.uow_factory.begin() as uow:
            for serial in ("RACE-1", "RACE-2"):
                service.register_pump(uow=uow, actor="bio", data=PumpCreate(
                    serial_number=serial, model_code=MODEL, lot_number="LOT-RACE",
                    expiry_date=date(2028, 12, 31)))
        answer: list[Any] = []
        recall = threading.Thread(target=lambda: answer.append(h.client.post(
            "/v1/recalls", headers=BIOMED,
            json={"model_code": MODEL, "lot_numbers": ["LOT-RACE"], "reason": "fast flow"})))
        with h.runtime.uow_factory() as implant:
            service.implant(uow=implant, actor="onc", serial="RACE-1", data=ImplantRequest(
                patient_mrn="MRN-RACE", implanted_at=T0 - timedelta(hours=1), center="C1"))
            implant.session.flush()
            recall.start()
            wait_until(lambda: _lock_waiters(engine, engine.url.database) >= 1,
                       what="the recall to wait on the pump the implant holds")
            implant.commit()
        recall.join(30)
        assert not recall.is_alive(), "the recall never finished"
        [r] = answer
        assert r.status_code == 201, r.text
        assert [i["serial_number"] for i in r.json()["implanted"]] == ["RACE-1"]
        assert r.json()["implanted"][0]["patient_mrn"] == "MRN-RACE"
        assert r.json()["quarantined"] == ["RACE-2"]
        pump = h.client.get("/v1/pumps/RACE-1", headers=NURSE).json()
        assert (pump["status"], pump["patient_mrn"]) == ("implanted", "MRN-RACE")
    finally:
        engine.dispose()
