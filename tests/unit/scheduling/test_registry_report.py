"""The registry report scheduling owns (CONTRACT.md, Reports) on SQLite, against the figures
computed by hand in registry_support.py; CSV by `Accept` or `?format=csv`."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update

from services.scheduling.models import Refill
from shared.contracts.vocabulary import RefillStatus
from tests.factories import T0
from tests.helpers import Harness, auth, start
from tests.helpers import test_settings as settings_for
from tests.unit.scheduling.registry_support import ADMIN, EXPECTED, by_key, seed_registry
from tests.unit.scheduling.scheduling_support import setup_therapy, worklist

NURSE = auth("nurse")
PERIOD = {"from": "2026-10", "to": "2026-11"}


def test_every_centre_and_the_consortium_per_month(tmp_path: Path) -> None:
    h, _ = start("scheduling", settings_for(tmp_path))
    seed_registry(h)
    r = h.client.get("/v1/reports/refills", params=PERIOD, headers=NURSE)
    assert r.status_code == 200, r.text
    assert r.json()["from_month"] == "2026-10" and r.json()["to_month"] == "2026-11"
    assert by_key(r.json()["rows"]) == EXPECTED


def test_one_centre_beside_the_consortium(tmp_path: Path) -> None:
    h, _ = start("scheduling", settings_for(tmp_path))
    seed_registry(h)
    r = h.client.get("/v1/reports/refills", params={**PERIOD, "center": "B"}, headers=NURSE)
    assert set(by_key(r.json()["rows"])) == {("B", "2026-10"), ("B", "2026-11"),
                                             ("*", "2026-10"), ("*", "2026-11")}


def test_csv_by_accept_or_by_format_holds_the_same_rows(tmp_path: Path) -> None:
    h, _ = start("scheduling", settings_for(tmp_path))
    seed_registry(h)
    by_accept = h.client.get("/v1/reports/refills", params=PERIOD,
                             headers={**NURSE, "Accept": "text/csv"})
    by_format = h.client.get("/v1/reports/refills", params={**PERIOD, "format": "csv"},
                             headers=NURSE)
    assert by_accept.status_code == 200, by_accept.text
    assert by_accept.headers["content-type"].startswith("text/csv")
    assert "attachment" in by_accept.headers["content-disposition"]
    assert by_accept.text == by_format.text
    rows = list(csv.DictReader(io.StringIO(by_accept.text)))
    a_oct = next(r for r in rows if r["center"] == "A" and r["month"] == "2026-10")
    assert a_oct["overdue_hours_p90"] == "44.2" and a_oct["abnormal_share"] == "0.5"
    assert next(r for r in rows if r["center"] == "B" and r["month"] == "2026-11")[
        "on_time_share"] == ""


def test_a_wrong_period_is_a_422(tmp_path: Path) -> None:
    h, _ = start("scheduling", settings_for(tmp_path))
    for params in ({"from": "2026-11", "to": "2026-10"}, {"from": "2026-13"},
                   {"from": "2026-1"}, {"format": "xlsx"}):
        assert h.client.get("/v1/reports/refills", params=params,
                            headers=NURSE).status_code == 422, params
    assert h.client.get("/v1/reports/refills").status_code == 401


def _a_october(h: Harness) -> dict[str, Any]:
    rows = h.client.get("/v1/reports/refills", params=PERIOD, headers=NURSE).json()["rows"]
    return dict(by_key(rows)[("A", "2026-10")])


def test_the_report_is_kept_until_it_is_too_old_or_a_band_changes(tmp_path: Path) -> None:
    h, _ = start("scheduling", settings_for(tmp_path, report_max_age_seconds=600))
    seed_registry(h)
    assert _a_october(h)["refills_done"] == 3
    with h.runtime.uow_factory() as uow:  # one more refill of A, in October
        uow.session.execute(update(Refill).where(Refill.id == "R3").values(
            status=RefillStatus.RECORDED))
        uow.commit()
    h.clock.advance(seconds=599)  # type: ignore[attr-defined]
    assert _a_october(h)["refills_done"] == 3  # the snapshot
    h.clock.advance(seconds=2)  # type: ignore[attr-defined]
    assert _a_october(h)["refills_done"] == 4
    # a centre's band changes: the abnormal readings are counted again at once
    assert _a_october(h)["abnormal_readings"] == 2  # 12 % and 40 % above A's 10 %
    assert h.client.put("/v1/centers/A/settings", json={"flow_warning_pct": 13},
                        headers=ADMIN).status_code == 200
    assert _a_october(h)["abnormal_readings"] == 1


def test_the_worker_keeps_the_default_period_fresh(tmp_path: Path) -> None:
    h, _ = start("scheduling", settings_for(tmp_path, report_max_age_seconds=600))
    seed_registry(h)
    [job] = [j for j in h.runtime.jobs if j.name == "registry"]
    assert job.interval_seconds == 300
    h.clock.advance(days=30)  # type: ignore[attr-defined]  # now in December: Jan..Dec 2026
    # A and B in October and November, B in December, and the consortium in those three
    assert job.run(h.runtime) == {"rows": 8}
    r = h.client.get("/v1/reports/refills", headers=NURSE).json()
    assert r["computed_at"] == (T0 + timedelta(days=30)).isoformat().replace("+00:00", "Z")


def test_a_refill_recorded_late_keeps_its_appointments_due_time_for_the_hours_overdue(
        tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    setup_therapy(h, bus, regimen="saline_maintenance", start_on="2026-11-02")
    appt = worklist(h)[0]
    due = datetime.fromisoformat(appt["due_at"])
    performed = min(due + timedelta(hours=30), T0)
    r = h.client.post("/v1/refills", headers=NURSE, json={
        "pump_serial": "SN1", "performed_at": performed.isoformat(), "residual_volume_ml": 10,
        "fill_volume_ml": 30, "fill_type": "saline"})
    assert r.status_code == 201, r.text
    assert r.json()["appointment_id"] == appt["id"]
    with h.runtime.uow_factory() as uow:
        refill = uow.session.get(Refill, r.json()["id"])
        assert refill is not None and refill.appointment_due_at == due
    month = f"{performed:%Y-%m}"
    rows = h.client.get("/v1/reports/refills", params={"from": month, "to": month},
                        headers=NURSE).json()["rows"]
    hours = (performed - due).total_seconds() / 3600
    assert hours > 0
    for row in rows:  # the centre's row and the consortium's
        assert (row["overdue_refills"], row["overdue_hours_median"]) == (1, round(hours, 2))
