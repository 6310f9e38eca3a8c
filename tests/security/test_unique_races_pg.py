"""Issue 16, item 2: requests racing for one unique key answer 409 (or replay the winner's
answer, or, for a PUT, all succeed), never 500; and the database's error text, which carries the
key's value (`DETAIL: Key (mrn)=(…) already exists`), reaches no log."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from shared.clock import MovableClock
from shared.db import make_engine
from shared.messaging.inproc import InProcessBus
from shared.migrations import upgrade
from tests.doubles import running_server
from tests.factories import T0, oncall_body
from tests.helpers import Harness, auth
from tests.helpers import test_settings as settings_for
from tests.integration.alerts.alerts_testkit import ONCALL
from tests.security.race_kit import N, at_once, production_logs, start_on_pg, statuses
from tests.unit.scheduling.scheduling_support import NURSE

MRN = "MRN-RACE-4711"
ADMIN = auth("admin", sub="ada-admin")
BIOMED = auth("biomed", sub="bo-biomed")
# lock waits as long as it takes: these races are about keys (test_lock_contention_pg: locks)
PATIENT_WAITS = {"db_lock_timeout_ms": 60_000, "db_pool_timeout_seconds": 60}


def _patient_body() -> dict[str, Any]:
    return {"mrn": MRN, "given_name": "Grace", "family_name": "Hopper",
            "birth_date": "1956-12-09", "weight_kg": 64, "center": "C1"}


def _scheduling(tmp_path: Path, url: str) -> Harness:
    settings = settings_for(tmp_path, scheduling_database_url=url, **PATIENT_WAITS)
    return start_on_pg("scheduling", settings, MovableClock(T0), InProcessBus())


def _count(h: Harness, sql: str) -> int:
    with h.runtime.engine.connect() as conn:
        return int(conn.scalar(text(sql)) or 0)


def test_fifty_registrations_of_one_mrn_one_201_the_rest_409_and_no_mrn_in_the_log(
        tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    h = _scheduling(tmp_path, pg_database("scheduling"))
    with running_server(h.client.app) as url, production_logs() as logs:
        answers = at_once(url, "POST", "/v1/patients", headers=NURSE, body=_patient_body())
    assert MRN not in logs.text and "Hopper" not in logs.text
    assert statuses(answers) == {201: 1, 409: N - 1}, [r.text for r in answers if r.status_code != 409]
    assert _count(h, "SELECT count(*) FROM patients") == 1
    for r in answers:
        assert MRN not in r.text or r.status_code == 201, r.text


def test_fifty_registrations_with_one_idempotency_key_all_replay_the_first(
        tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    h = _scheduling(tmp_path, pg_database("scheduling"))
    with running_server(h.client.app) as url, production_logs() as logs:
        answers = at_once(url, "POST", "/v1/patients", body=_patient_body(),
                          headers={**NURSE, "Idempotency-Key": "register-grace"})
    assert statuses(answers) == {201: N}, [r.text for r in answers if r.status_code != 201]
    assert len({r.text for r in answers}) == 1  # every answer is the first one, replayed
    assert _count(h, "SELECT count(*) FROM patients") == 1
    assert _count(h, "SELECT count(*) FROM audit_log WHERE action = 'patient.created'") == 1
    assert MRN not in logs.text


def test_fifty_puts_of_a_new_centers_oncall_all_succeed_and_one_row_stays(
        tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    """A PUT replaces what is there, so PUTs racing to create one centre are all answered 200
    (the last one wins), as PUTs racing on an existing centre are."""
    settings = settings_for(tmp_path, alerts_database_url=pg_database("alerts"), **PATIENT_WAITS)
    h = start_on_pg("alerts", settings, MovableClock(T0), InProcessBus())
    with running_server(h.client.app) as url:
        answers = at_once(url, "PUT", "/v1/oncall/new-centre", headers=ONCALL,
                          body=lambda i: oncall_body([(f"member-{i}", "log", f"member-{i}")],
                                                     delay_s=600 + i))
    assert statuses(answers) == {200: N}, [r.text for r in answers if r.status_code != 200]
    assert _count(h, "SELECT count(*) FROM oncall_schedules") == 1
    stored = h.client.get("/v1/oncall/new-centre", headers=ONCALL).json()
    i = stored["escalation_delay_seconds"] - 600
    assert stored["levels"][0]["members"][0]["name"] == f"member-{i}"  # one PUT, whole


def test_fifty_registrations_of_one_serial_one_201_the_rest_409(
        tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    settings = settings_for(tmp_path, inventory_database_url=pg_database("inventory"),
                            **PATIENT_WAITS)
    h = start_on_pg("inventory", settings, MovableClock(T0), InProcessBus())
    with running_server(h.client.app) as url:
        models = at_once(url, "POST", "/v1/pump-models", headers=ADMIN, body={
            "code": "ACME-1", "manufacturer": "Acme", "name": "Acme 1",
            "gtin": "00812345000047", "reservoir_ml": 30, "nominal_flow_ml_per_day": 0.9})
        pumps = at_once(url, "POST", "/v1/pumps", headers=BIOMED, body={
            "serial_number": "SN-RACE-1", "model_code": "ACME-1", "lot_number": "L1",
            "expiry_date": "2028-12-31"})
    assert statuses(models) == {201: 1, 409: N - 1}, [r.text for r in models if r.status_code >= 500]
    assert statuses(pumps) == {201: 1, 409: N - 1}, [r.text for r in pumps if r.status_code >= 500]
    assert _count(h, "SELECT count(*) FROM pumps") == 1


def test_a_unique_violation_on_postgresql_is_logged_without_its_values(
        tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    """Rendered by the production pipelines (structlog's and the stdlib root logger's), a real
    PostgreSQL unique violation names its SQLSTATE and constraint, never the key's value."""
    url = pg_database("scheduling")
    upgrade("scheduling", url)
    engine = make_engine(url)
    insert_patient = text(
        "INSERT INTO patients (mrn, given_name, family_name, birth_date, weight_kg, center, "
        "created_at, updated_at) VALUES (:mrn, 'Grace', 'Hopper', '1956-12-09', 64, 'C1', "
        "now(), now())")
    try:
        with engine.begin() as conn:
            conn.execute(insert_patient, {"mrn": MRN})
        with production_logs() as logs:
            try:
                with engine.begin() as conn:
                    conn.execute(insert_patient, {"mrn": MRN})
            except IntegrityError as exc:
                assert MRN in str(exc)  # what went into the log before
                structlog.get_logger("test").exception("request.failed")
                logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    finally:
        engine.dispose()
    assert logs.text.count("UniqueViolation (SQLSTATE 23505) constraint=pk_patients") == 2
    assert MRN not in logs.text and "Key (mrn)" not in logs.text
