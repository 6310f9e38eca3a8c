"""Measured flow is (volume left at the PREVIOUS fill − residual now) / days: refills whose volumes
differ, so that using this fill's volume instead gives other numbers (DOMAIN.md, refill arithmetic)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from services.scheduling.flow import PreviousFill, refill_figures
from tests.factories import T0
from tests.helpers import start
from tests.helpers import test_settings as settings_for
from tests.unit.scheduling.scheduling_support import NURSE, implant, patient, therapy

# previous fill 20 mL; 10 days later 11 mL are withdrawn and 28 mL put in:
# (20 − 11) / 10 = 0.9 mL/day (this fill's 28 mL would give 1.7); labeled 0.8 → +12.5 %;
# empty after 28 mL / 0.9 mL/day = 31 d 2 h 40 min
PREVIOUS_ML, RESIDUAL_ML, FILL_ML, DAYS, LABELED = 20.0, 11.0, 28.0, 10, 0.8
EMPTY_AFTER = timedelta(days=31, hours=2, minutes=40)


def test_figures_use_the_previous_fills_volume() -> None:
    figures = refill_figures(performed_at=T0 + timedelta(days=DAYS), residual_volume_ml=RESIDUAL_ML,
                             fill_volume_ml=FILL_ML, labeled_flow_ml_per_day=LABELED,
                             previous=PreviousFill(T0, PREVIOUS_ML))
    assert figures.elapsed_days == 10.0
    assert figures.measured_flow_ml_per_day == 0.9
    assert figures.flow_deviation_pct == 12.5
    assert figures.projected_empty_at is not None
    assert abs(figures.projected_empty_at - (T0 + timedelta(days=DAYS) + EMPTY_AFTER)) \
        < timedelta(milliseconds=1)


def test_the_api_measures_flow_from_the_previous_fill(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    patient(h)
    implant(h, bus, labeled_flow_ml_per_day=LABELED)
    therapy(h, start_on="2026-11-02", regimen="saline_maintenance")
    body = {"pump_serial": "SN1", "fill_type": "saline"}
    first = h.client.post("/v1/refills", headers=NURSE, json={
        **body, "performed_at": T0.isoformat(), "residual_volume_ml": 0,
        "fill_volume_ml": PREVIOUS_ML})
    assert first.status_code == 201, first.text
    h.clock.advance(days=DAYS + 1)  # type: ignore[attr-defined]
    second_at = T0 + timedelta(days=DAYS)
    second = h.client.post("/v1/refills", headers=NURSE, json={
        **body, "performed_at": second_at.isoformat(),
        "residual_volume_ml": RESIDUAL_ML, "fill_volume_ml": FILL_ML})
    assert second.status_code == 201, second.text
    got = second.json()
    assert got["measured_flow_ml_per_day"] == pytest.approx(0.9, abs=1e-9)
    assert got["flow_deviation_pct"] == pytest.approx(12.5, abs=1e-9)
    assert got["next_appointment"]["projected_empty_at"] == "2026-12-13T10:40:00Z"
    readings = h.client.get("/v1/pumps/SN1/flow-readings", headers=NURSE).json()["items"]
    assert [r["measured_flow_ml_per_day"] for r in readings] == [pytest.approx(0.9, abs=1e-9)]
