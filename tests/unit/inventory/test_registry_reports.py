"""Inventory's registry reports (CONTRACT.md, Reports): pumps by status now, explants by reason
per month, each centre's rows then the consortium's; CSV formula-safe."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from pathlib import Path

from services.inventory.models import Pump, PumpModel
from tests.factories import T0
from tests.helpers import Harness, auth, start
from tests.helpers import test_settings as settings_for

NURSE = auth("nurse")
# (serial, status, centre, explanted_at, reason)
PUMPS = [
    ("P1", "implanted", "A", None, None),
    ("P2", "implanted", "B", None, None),
    ("P3", "explanted", "A", datetime(2026, 10, 3, tzinfo=UTC), "infection"),
    ("P4", "explanted", "A", datetime(2026, 10, 9, tzinfo=UTC), "infection"),
    ("P5", "explanted", "B", datetime(2026, 10, 20, tzinfo=UTC), "=cmd|' /C calc'!A0"),
    ("P6", "explanted", "B", datetime(2026, 11, 1, tzinfo=UTC), None),
    ("P7", "in_stock", None, None, None),
    ("P8", "explanted", "A", datetime(2026, 8, 1, tzinfo=UTC), "infection"),  # before the period
]


def _seed(h: Harness) -> None:
    with h.runtime.uow_factory() as uow:
        uow.session.add(PumpModel(code="M", manufacturer="X", name="X", gtin="00000000000017",
                                  reservoir_ml=30, nominal_flow_ml_per_day=1.0, created_at=T0))
        uow.session.flush()
        for serial, status, center, explanted_at, reason in PUMPS:
            uow.session.add(Pump(serial_number=serial, model_code="M", expiry_date=date(2030, 1, 1),
                                 reservoir_ml=30, labeled_flow_ml_per_day=1.0, status=status,
                                 center=center, explanted_at=explanted_at, explant_reason=reason,
                                 created_at=T0, updated_at=T0))
        uow.commit()


def test_pumps_by_status_per_centre_and_for_the_consortium(tmp_path: Path) -> None:
    h, _ = start("inventory", settings_for(tmp_path))
    _seed(h)
    r = h.client.get("/v1/reports/pumps", headers=NURSE)
    assert r.status_code == 200, r.text
    got = {(x["center"], x["status"]): x["pumps"] for x in r.json()["rows"]}
    assert got == {("(none)", "in_stock"): 1, ("A", "explanted"): 3, ("A", "implanted"): 1,
                   ("B", "explanted"): 2, ("B", "implanted"): 1, ("*", "explanted"): 5,
                   ("*", "implanted"): 2, ("*", "in_stock"): 1}
    one = h.client.get("/v1/reports/pumps", params={"center": "B"}, headers=NURSE).json()
    assert {x["center"] for x in one["rows"]} == {"B", "*"}


def test_explants_by_reason_per_month_and_their_csv(tmp_path: Path) -> None:
    h, _ = start("inventory", settings_for(tmp_path))
    _seed(h)
    params = {"from": "2026-10", "to": "2026-11"}
    r = h.client.get("/v1/reports/explants", params=params, headers=NURSE)
    got = {(x["center"], x["month"], x["reason"]): x["explants"] for x in r.json()["rows"]}
    assert got == {("A", "2026-10", "infection"): 2, ("B", "2026-10", "=cmd|' /C calc'!A0"): 1,
                   ("B", "2026-11", "(unspecified)"): 1, ("*", "2026-10", "infection"): 2,
                   ("*", "2026-10", "=cmd|' /C calc'!A0"): 1, ("*", "2026-11", "(unspecified)"): 1}
    body = h.client.get("/v1/reports/explants", params={**params, "format": "csv"},
                        headers=NURSE).text
    reasons = {row["reason"] for row in csv.DictReader(io.StringIO(body))}
    assert "'=cmd|' /C calc'!A0" in reasons and "=cmd|' /C calc'!A0" not in reasons
    assert h.client.get("/v1/reports/explants", params={"to": "2026-13"},
                        headers=NURSE).status_code == 422
