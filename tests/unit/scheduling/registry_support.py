"""A small registry whose figures were computed by hand (the report tests on SQLite and on
PostgreSQL share it)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from services.scheduling.models import Appointment, Delivery, Patient, Refill, Therapy
from shared.contracts.vocabulary import (
    AppointmentStatus,
    DeliveryStatus,
    FillType,
    RefillStatus,
    Regimen,
    TherapyStatus,
)
from tests.helpers import Harness, auth

ADMIN = auth("admin", sub="ada-admin")


def _t(day: str, hour: float = 0) -> datetime:
    d = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return d.replace(hour=int(hour), minute=int(round((hour % 1) * 60)))


# (centre, performed_at, due_at, outside_window, deviation %, status)
REFILLS: list[tuple[str, datetime, datetime, bool, float | None, RefillStatus]] = [
    ("A", _t("2026-10-05", 10), _t("2026-10-05"), False, 12.0, RefillStatus.RECORDED),  # 10 h late
    ("A", _t("2026-10-10"), _t("2026-10-08"), False, -5.0, RefillStatus.RECORDED),  # 48 h late
    ("A", _t("2026-10-20"), _t("2026-10-25"), True, None, RefillStatus.RECORDED),  # early
    ("A", _t("2026-10-21"), _t("2026-10-01"), False, 40.0, RefillStatus.ENTERED_IN_ERROR),
    ("B", _t("2026-10-01", 20), _t("2026-10-01"), False, 12.0, RefillStatus.RECORDED),  # 20 h
    ("B", _t("2026-10-30", 6), _t("2026-10-30"), False, 20.0, RefillStatus.RECORDED),  # 6 h
    ("A", _t("2026-11-01", 0.5), _t("2026-11-01"), True, None, RefillStatus.RECORDED),  # 0.5 h
    ("B", _t("2026-12-01"), _t("2026-11-20"), False, 1.0, RefillStatus.RECORDED),  # out of period
]
# (centre, needed_by, late announced, status)
DELIVERIES = [
    ("A", _t("2026-10-15"), True, DeliveryStatus.DISPATCHED),
    ("A", _t("2026-10-16"), False, DeliveryStatus.DELIVERED),
    ("A", _t("2026-10-17"), True, DeliveryStatus.CANCELLED),  # left out
    ("B", _t("2026-11-05"), False, DeliveryStatus.REQUESTED),
]

FIGURES = ("refills_done", "on_time", "on_time_share", "overdue_refills", "overdue_hours_median",
           "overdue_hours_p90", "readings", "abnormal_readings", "abnormal_share", "deliveries",
           "deliveries_late")
# the report of 2026-10..2026-11, by hand (centre A judges abnormal flow at 10 %, B at 15 %)
_BY_HAND: dict[tuple[str, str], tuple[Any, ...]] = {
    # overdue 10 h and 48 h: median 29, p90 = 10 + 0.9 × 38 = 44.2; 12 % abnormal at A's 10 %
    ("A", "2026-10"): (3, 2, 0.6667, 2, 29.0, 44.2, 2, 1, 0.5, 2, 1),
    ("A", "2026-11"): (1, 0, 0.0, 1, 0.5, 0.5, 0, 0, None, 0, 0),
    # overdue 20 h and 6 h: median 13, p90 = 6 + 0.9 × 14 = 18.6; 12 % normal at B's 15 %
    ("B", "2026-10"): (2, 2, 1.0, 2, 13.0, 18.6, 2, 1, 0.5, 0, 0),
    ("B", "2026-11"): (0, 0, None, 0, None, None, 0, 0, None, 1, 0),
    # hours 6, 10, 20, 48: median 15, p90 at rank 2.7 = 20 + 0.7 × 28 = 39.6
    ("*", "2026-10"): (5, 4, 0.8, 4, 15.0, 39.6, 4, 2, 0.5, 2, 1),
    ("*", "2026-11"): (1, 0, 0.0, 1, 0.5, 0.5, 0, 0, None, 1, 0),
}
EXPECTED = {k: dict(zip(FIGURES, v, strict=True)) for k, v in _BY_HAND.items()}


def seed_registry(h: Harness) -> None:
    """The rows above, written straight to scheduling's tables; centre A's own warning band."""
    r = h.client.put("/v1/centers/A/settings", json={"flow_warning_pct": 10}, headers=ADMIN)
    assert r.status_code == 200, r.text
    now = _t("2026-11-02", 8)
    with h.runtime.uow_factory() as uow:
        s = uow.session
        for c in ("A", "B"):
            s.add(Patient(mrn=f"M{c}", given_name="X", family_name="Y",
                          birth_date=date(1960, 1, 1), weight_kg=70.0, center=c, created_at=now,
                          updated_at=now))
        s.flush()
        for c in ("A", "B"):
            s.add(Therapy(id=f"T{c}", patient_mrn=f"M{c}", pump_serial=f"S{c}",
                          regimen=Regimen.SALINE_MAINTENANCE, status=TherapyStatus.ACTIVE,
                          start_on=date(2026, 9, 1), refill_interval_days=14,
                          dosing_weight="actual", created_by="t", created_at=now, updated_at=now))
        s.flush()
        for i, (c, performed, due, outside, dev, status) in enumerate(REFILLS):
            s.add(Appointment(id=f"AP{i}", therapy_id=f"T{c}", patient_mrn=f"M{c}", center=c,
                              pump_serial=f"S{c}", fill_type=FillType.SALINE, due_at=due,
                              status=AppointmentStatus.COMPLETED, created_at=now, updated_at=now))
            s.add(Refill(id=f"R{i}", pump_serial=f"S{c}", patient_mrn=f"M{c}", center=c,
                         therapy_id=f"T{c}", appointment_id=f"AP{i}", appointment_due_at=due,
                         performed_at=performed,
                         residual_volume_ml=1.0, fill_volume_ml=30.0, fill_type=FillType.SALINE,
                         expected_flow_ml_per_day=1.0, flow_deviation_pct=dev,
                         measured_flow_ml_per_day=None if dev is None else 1 + dev / 100,
                         outside_window=outside, recorded_by="t", created_at=now, status=status))
        for i, (c, needed_by, late, status) in enumerate(DELIVERIES):
            s.add(Delivery(id=f"D{i}", appointment_id=f"AP{i}", therapy_id=f"T{c}",
                           patient_mrn=f"M{c}", pump_serial=f"S{c}", center=c, needed_by=needed_by,
                           status=status, drugs=[], order={}, created_at=now, updated_at=now,
                           late_announced_at=needed_by if late else None))
        uow.commit()


def by_key(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The report's rows by (centre, month), without those two."""
    return {(r["center"], r["month"]): {k: v for k, v in r.items() if k not in ("center", "month")}
            for r in rows}
