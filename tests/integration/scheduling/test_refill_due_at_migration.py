"""Migration d7f2b9e4a1c6: the refills recorded before it get the due time of the appointment
they completed (the registry's hours overdue read it from the refill), on SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlalchemy.orm import Session

from services.scheduling.models import Appointment, Patient, Refill, Therapy
from shared.contracts.vocabulary import AppointmentStatus, FillType, Regimen, TherapyStatus
from shared.db import make_engine
from shared.migrations import upgrade

BEFORE = "c3e8a1f5d902"
DUE = datetime(2026, 10, 5, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 10, 6, 9, 0, tzinfo=UTC)


def _seed_before(url: str) -> None:
    """A patient, a therapy, a completed appointment and its refill, in the schema before."""
    engine = make_engine(url)
    try:
        with Session(engine) as s:
            s.add(Patient(mrn="M1", given_name="X", family_name="Y", birth_date=date(1960, 1, 1),
                          weight_kg=70.0, center="A", created_at=NOW, updated_at=NOW))
            s.flush()
            s.add(Therapy(id="T1", patient_mrn="M1", pump_serial="S1",
                          regimen=Regimen.SALINE_MAINTENANCE, status=TherapyStatus.ACTIVE,
                          start_on=date(2026, 9, 1), refill_interval_days=14,
                          dosing_weight="actual", created_by="t", created_at=NOW, updated_at=NOW))
            s.flush()
            s.add(Appointment(id="AP1", therapy_id="T1", patient_mrn="M1", center="A",
                              pump_serial="S1", fill_type=FillType.SALINE, due_at=DUE,
                              status=AppointmentStatus.COMPLETED, created_at=NOW, updated_at=NOW))
            s.flush()
            # the refill's columns of the schema before (no appointment_due_at yet)
            for refill_id, appointment_id in (("R1", "AP1"), ("R2", None)):
                s.execute(insert(Refill.__table__).values(
                    id=refill_id, pump_serial="S1", patient_mrn="M1", center="A",
                    therapy_id="T1", appointment_id=appointment_id, performed_at=NOW,
                    residual_volume_ml=1.0, fill_volume_ml=30.0, fill_type=FillType.SALINE,
                    expected_flow_ml_per_day=1.0, outside_window=False, recorded_by="t",
                    created_at=NOW, status="recorded"))
            s.commit()
    finally:
        engine.dispose()


def _due_times_after_upgrade(url: str) -> dict[str, datetime | None]:
    upgrade("scheduling", url, BEFORE)
    _seed_before(url)
    upgrade("scheduling", url)
    engine = make_engine(url)
    try:
        with Session(engine) as s:
            return {r.id: r.appointment_due_at for r in s.query(Refill).order_by(Refill.id)}
    finally:
        engine.dispose()


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_refills_recorded_before_get_their_appointments_due_time(
        dialect: str, tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    url = (f"sqlite:///{tmp_path}/scheduling.db" if dialect == "sqlite"
           else pg_database("scheduling"))
    assert _due_times_after_upgrade(url) == {"R1": DUE, "R2": None}
