"""Issue 16, item 1: requests that start a therapy at the same moment open one therapy and send
one chemotherapy order, whatever their timing; the database keeps it (partial unique indexes on
the open therapies of a pump and of a patient), on PostgreSQL and SQLite alike."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.exc import IntegrityError

from services.scheduling.models import Patient, Therapy
from shared.clock import MovableClock
from shared.db import make_engine
from shared.events import EventType
from shared.messaging.inproc import InProcessBus
from shared.migrations import upgrade
from tests.doubles import running_server
from tests.factories import T0
from tests.helpers import Harness
from tests.helpers import test_settings as settings_for
from tests.security.race_kit import N, at_once, start_on_pg, statuses
from tests.unit.scheduling.scheduling_support import ONCOLOGIST, implant, outbox, patient, therapy

PREVIOUS = "6a1f0c9e2b47"  # scheduling's revision before the indexes


def _scheduling(tmp_path: Path, url: str) -> tuple[Harness, InProcessBus]:
    bus = InProcessBus()
    # a generous pool wait: these tests are about the race, test_lock_contention_pg about the pool
    h = start_on_pg("scheduling", settings_for(tmp_path, scheduling_database_url=url,
                                               db_pool_timeout_seconds=60), MovableClock(T0), bus)
    return h, bus


def _therapy_body(serial: str) -> dict[str, Any]:
    # starts today: its first fill, chemo, is inside the pharmacy's lead time, so creating the
    # therapy orders the floxuridine at once
    return {"patient_mrn": "MRN1", "pump_serial": serial, "regimen": "fudr_alternating",
            "start_on": T0.date().isoformat()}


def _open_therapies(h: Harness) -> list[tuple[str, str]]:
    with h.runtime.engine.connect() as conn:
        return [(r.pump_serial, r.patient_mrn) for r in conn.execute(
            select(Therapy.pump_serial, Therapy.patient_mrn)
            .where(Therapy.status.in_(("active", "paused"))))]


def _assert_losers_told_the_state(answers: list[Any], winner_id: str) -> None:
    for r in answers:
        if r.status_code == 409:
            assert r.headers["content-type"].startswith("application/problem+json"), r.text
            detail = r.json()["detail"]
            # the current state: the open therapy, or (lock timeout) that it is being written
            assert winner_id in detail or "locked by another request" in detail, detail


def test_fifty_requests_for_one_pump_open_one_therapy_and_send_one_order(
        tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    h, bus = _scheduling(tmp_path, pg_database("scheduling"))
    patient(h)
    implant(h, bus)
    with running_server(h.client.app) as url:
        answers = at_once(url, "POST", "/v1/therapies", headers=ONCOLOGIST,
                          body=_therapy_body("SN1"))
    assert statuses(answers) == {201: 1, 409: N - 1}, [r.text for r in answers][:5]
    [winner] = [r.json() for r in answers if r.status_code == 201]
    _assert_losers_told_the_state(answers, winner["id"])
    assert _open_therapies(h) == [("SN1", "MRN1")]
    with h.runtime.engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM therapies")) == 1
        assert conn.scalar(text("SELECT count(*) FROM appointments")) == 1
        assert conn.scalar(text("SELECT count(*) FROM deliveries")) == 1
    orders = outbox(h, EventType.ORDER_REQUESTED)
    assert len(orders) == 1 and orders[0]["data"]["therapy_id"] == winner["id"]


def test_fifty_requests_for_one_patient_on_two_pumps_open_one_therapy(
        tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    """The patient's rule is the database's too: requests naming either of two pumps the
    patient is known to carry (e.g. an explant not yet learnt) open one therapy between them."""
    h, bus = _scheduling(tmp_path, pg_database("scheduling"))
    patient(h)
    implant(h, bus, "SN1")
    implant(h, bus, "SN2")
    with running_server(h.client.app) as url:
        answers = at_once(url, "POST", "/v1/therapies", headers=ONCOLOGIST,
                          body=lambda i: _therapy_body("SN1" if i % 2 else "SN2"))
    assert statuses(answers) == {201: 1, 409: N - 1}, [r.text for r in answers][:5]
    [winner] = [r.json() for r in answers if r.status_code == 201]
    _assert_losers_told_the_state(answers, winner["id"])
    assert _open_therapies(h) == [(winner["pump_serial"], "MRN1")]
    assert len(outbox(h, EventType.ORDER_REQUESTED)) == 1


def test_a_second_therapy_for_the_patient_is_refused_naming_the_open_one(
        tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    h, bus = _scheduling(tmp_path, pg_database("scheduling"))
    patient(h)
    implant(h, bus, "SN1")
    implant(h, bus, "SN2")
    first = therapy(h, serial="SN1")
    r = h.client.post("/v1/therapies", json=_therapy_body("SN2"), headers=ONCOLOGIST)
    assert r.status_code == 409, r.text
    assert first["id"] in r.json()["detail"] and r.json()["current_status"] == "active"
    stopped = h.client.patch(f"/v1/therapies/{first['id']}", json={"action": "stop"},
                             headers=ONCOLOGIST)
    assert stopped.status_code == 200, stopped.text
    assert h.client.post("/v1/therapies", json=_therapy_body("SN2"),
                         headers=ONCOLOGIST).status_code == 201


# ---- the indexes themselves, on both databases --------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def scheduling_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/scheduling.db"
    pg_database = request.getfixturevalue("pg_database")
    return str(pg_database("scheduling"))


def _add_patient(engine: Engine, mrn: str) -> None:
    now = datetime(2026, 11, 2, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(insert(Patient.__table__).values(
            mrn=mrn, given_name="Ada", family_name="Lovelace", birth_date=date(1960, 5, 1),
            weight_kg=70.0, center="C1", created_at=now, updated_at=now))


def _add_therapy(engine: Engine, therapy_id: str, *, serial: str, mrn: str,
                 status: str = "active") -> None:
    now = datetime(2026, 11, 2, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(insert(Therapy.__table__).values(
            id=therapy_id, patient_mrn=mrn, pump_serial=serial, regimen="saline_maintenance",
            status=status, start_on=date(2026, 11, 2), refill_interval_days=14,
            dosing_weight="actual", created_by="test", created_at=now, updated_at=now))


def test_the_database_refuses_a_second_open_therapy_per_pump_and_per_patient(
        scheduling_url: str) -> None:
    upgrade("scheduling", scheduling_url)
    engine = make_engine(scheduling_url)
    try:
        for mrn in ("M1", "M2"):
            _add_patient(engine, mrn)
        _add_therapy(engine, "t-stopped", serial="SN1", mrn="M1", status="stopped")
        _add_therapy(engine, "t-open", serial="SN1", mrn="M1", status="paused")
        with pytest.raises(IntegrityError):  # the same pump, another patient
            _add_therapy(engine, "t-pump", serial="SN1", mrn="M2")
        with pytest.raises(IntegrityError):  # the same patient, another pump
            _add_therapy(engine, "t-patient", serial="SN2", mrn="M1")
        _add_therapy(engine, "t-other", serial="SN2", mrn="M2")
        with engine.connect() as conn:
            assert sorted(conn.scalars(text("SELECT id FROM therapies"))) == [
                "t-open", "t-other", "t-stopped"]
    finally:
        engine.dispose()


def test_the_migration_refuses_existing_duplicates_and_changes_nothing(
        scheduling_url: str) -> None:
    """Which duplicate to keep is a clinical decision: the upgrade names them (ids, no MRN)
    and stops; once all but one are stopped it goes through."""
    upgrade("scheduling", scheduling_url, PREVIOUS)
    engine = make_engine(scheduling_url)
    try:
        for mrn in ("MRN-SECRET-1", "MRN-SECRET-2"):
            _add_patient(engine, mrn)
        _add_therapy(engine, "t-a", serial="SN1", mrn="MRN-SECRET-1")
        _add_therapy(engine, "t-b", serial="SN1", mrn="MRN-SECRET-1")
        _add_therapy(engine, "t-c", serial="SN2", mrn="MRN-SECRET-2", status="paused")
        _add_therapy(engine, "t-d", serial="SN3", mrn="MRN-SECRET-2")
        with pytest.raises(RuntimeError) as refused:
            upgrade("scheduling", scheduling_url)
        message = str(refused.value)
        assert "t-a, t-b" in message and "t-c, t-d" in message and "MRN-SECRET" not in message
        assert "1 pump(s) and 2 patient(s)" in message
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT version_num FROM alembic_version")) == PREVIOUS
        with engine.begin() as conn:
            conn.execute(text("UPDATE therapies SET status = 'stopped' WHERE id IN ('t-b', 't-d')"))
        upgrade("scheduling", scheduling_url)
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT version_num FROM alembic_version")) != PREVIOUS
        with pytest.raises(IntegrityError):
            _add_therapy(engine, "t-e", serial="SN1", mrn="MRN-SECRET-2")
    finally:
        engine.dispose()
