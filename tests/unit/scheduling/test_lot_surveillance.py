"""Flow surveillance in scheduling (DOMAIN.md, Flow surveillance): refills recorded through the
API update the running sums, a drifting lot is announced with its evidence, a normal one is not,
the rebuild from scratch agrees with the running sums, a reading entered in error leaves them,
and a pump's trend is announced and answered with its flow readings. SQLite, in-process bus."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from services.scheduling import drift
from services.scheduling.models import FlowLotStats, FlowPumpStats
from shared.events import EventType
from shared.messaging.inproc import InProcessBus
from tests.factories import T0, pump_implanted
from tests.helpers import Harness, emit, start
from tests.helpers import test_settings as settings_for
from tests.unit.scheduling.scheduling_support import NURSE, outbox, patient, therapy

# lot A runs about +8 %, lot B about 0 % (labeled 1 mL/day, 14 days between fills)
LOT_A = [7.0, 8.0, 9.0, 8.5, 7.5, 8.0]
LOT_B = [-1.0, 0.0, 1.0, 0.5, -0.5, 0.0]


def implant_in_lot(h: Harness, bus: InProcessBus, serial: str, mrn: str, lot: str) -> None:
    emit(h, bus, EventType.PUMP_IMPLANTED, pump_implanted(
        serial, mrn, lot_number=lot, implanted_at=datetime(2026, 8, 1, tzinfo=UTC)),
        subject=serial)


def refill(h: Harness, serial: str, days_before_t0: float, residual_ml: float) -> dict[str, Any]:
    r = h.client.post("/v1/refills", headers=NURSE, json={
        "pump_serial": serial, "performed_at": (T0 - timedelta(days=days_before_t0)).isoformat(),
        "residual_volume_ml": residual_ml, "fill_volume_ml": 30, "fill_type": "saline"})
    assert r.status_code == 201, r.text
    return dict(r.json())


def pump_with_readings(h: Harness, bus: InProcessBus, serial: str, lot: str,
                       deviations_pct: list[float]) -> list[dict[str, Any]]:
    """A pump of `lot` in therapy, filled every 14 days so that each reading has the deviation."""
    mrn = f"M-{serial}"
    patient(h, mrn)
    implant_in_lot(h, bus, serial, mrn, lot)
    therapy(h, mrn, serial, regimen="saline_maintenance", start_on="2026-08-02")
    days = 14.0 * len(deviations_pct) + 1
    done = [refill(h, serial, days, 0)]
    for dev in deviations_pct:
        days -= 14
        done.append(refill(h, serial, days, 30 - 14 * (1 + dev / 100)))
    return done


@pytest.fixture
def scheduling(tmp_path: Path) -> tuple[Harness, InProcessBus]:
    return start("scheduling", settings_for(tmp_path))


def lots(h: Harness) -> dict[str, tuple[int, float, float, int, bool]]:
    with h.runtime.uow_factory() as uow:
        return {r.lot_number: (r.pumps, round(r.sum_mean_pct, 6), round(r.sum_mean_sq, 6),
                               r.readings, r.drifting)
                for r in uow.session.scalars(select(FlowLotStats))}


def test_a_drifting_lot_is_announced_with_its_evidence_and_a_normal_one_is_not(
        scheduling: tuple[Harness, InProcessBus]) -> None:
    h, bus = scheduling
    for i, dev in enumerate(LOT_B):
        pump_with_readings(h, bus, f"B{i}", "LOT-B", [dev])
        pump_with_readings(h, bus, f"C{i}", "LOT-C", [-dev])
    for i, dev in enumerate(LOT_A):
        pump_with_readings(h, bus, f"A{i}", "LOT-A", [dev])
    events = outbox(h, EventType.LOT_FLOW_DRIFT)
    # tested after each reading: from the 5th pump of lot A on
    assert [e["data"]["lot_pumps"] for e in events] == [5, 6]
    data = events[-1]["data"]
    assert (data["model_code"], data["lot_number"]) == ("INTERA-3000", "LOT-A")
    assert data["pump_serials"] == [f"A{i}" for i in range(6)]
    assert data["lot_mean_deviation_pct"] == pytest.approx(8.0, abs=0.01)
    assert data["rest_mean_deviation_pct"] == pytest.approx(0.0, abs=0.01)
    assert data["difference_pct"] == pytest.approx(8.0, abs=0.01)
    assert data["p_value"] < 0.001 and data["ci95_pct"][0] > 4
    assert data["test"] == "welch_t_two_sided" and data["lot_readings"] == 6
    assert data["rest_pumps"] == 12
    assert [lots(h)[lot][4] for lot in ("LOT-A", "LOT-B", "LOT-C")] == [True, False, False]

    # from scratch: the same sums, the same verdicts, and the drifting lot announced again
    incremental = lots(h)
    with h.runtime.uow_factory() as uow:
        facts = drift.rebuild(uow, h.runtime.settings)
        uow.commit()
    assert facts == {"lots": 3, "drifting": 1}
    assert lots(h) == incremental
    assert len(outbox(h, EventType.LOT_FLOW_DRIFT)) == 3


def test_a_reading_entered_in_error_leaves_the_sums(
        scheduling: tuple[Harness, InProcessBus]) -> None:
    h, bus = scheduling
    fills = pump_with_readings(h, bus, "A0", "LOT-A", [8.0, 10.0])
    assert lots(h)["LOT-A"][:2] == (1, 9.0) and lots(h)["LOT-A"][3] == 2
    r = h.client.post(f"/v1/refills/{fills[-1]['id']}/entered-in-error", headers=NURSE,
                      json={"reason": "wrong pump scanned"})
    assert r.status_code == 200, r.text
    assert lots(h)["LOT-A"][:4] == (1, 8.0, 64.0, 1)
    with h.runtime.uow_factory() as uow:
        assert uow.session.get(FlowPumpStats, "A0").readings == 1  # type: ignore[union-attr]


def test_a_pump_of_no_lot_is_left_out(scheduling: tuple[Harness, InProcessBus]) -> None:
    h, bus = scheduling
    patient(h, "M-X")
    emit(h, bus, EventType.PUMP_IMPLANTED, pump_implanted(
        "X1", "M-X", implanted_at=datetime(2026, 10, 1, tzinfo=UTC)), subject="X1")
    therapy(h, "M-X", "X1", regimen="saline_maintenance", start_on="2026-10-02")
    refill(h, "X1", 15, 0)
    refill(h, "X1", 1, 15)
    assert lots(h) == {}


def test_a_trend_towards_the_band_is_announced_and_projected(
        scheduling: tuple[Harness, InProcessBus]) -> None:
    h, bus = scheduling
    # +2, +6, +10, +14 % every 14 days: the next reading predicted at +18 %, the last still inside
    pump_with_readings(h, bus, "T1", "LOT-T", [2.0, 6.0, 10.0, 14.0])
    trends = [e["data"] for e in outbox(h, EventType.FLOW_TREND)]
    assert [t["readings"] for t in trends] == [3, 4]
    assert trends[0]["crossing"] is False  # 2, 6, 10: predicted 14 %, inside
    assert trends[-1]["crossing"] is True
    assert trends[-1]["predicted_deviation_pct"] == pytest.approx(18.0, abs=0.05)
    r = h.client.get("/v1/pumps/T1/flow-readings", headers=NURSE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["items"]) == 4
    trend = body["trend"]
    assert trend["crossing"] is True and trend["band_pct"] == 15.0
    assert trend["predicted_flow_ml_per_day"] == pytest.approx(1.18, abs=1e-3)
    assert trend["predicted_at"].startswith((T0 + timedelta(days=13)).date().isoformat())


def test_no_trend_below_three_readings(scheduling: tuple[Harness, InProcessBus]) -> None:
    h, bus = scheduling
    pump_with_readings(h, bus, "T2", "LOT-T", [2.0, 6.0])
    assert outbox(h, EventType.FLOW_TREND) == []
    body = h.client.get("/v1/pumps/T2/flow-readings", headers=NURSE).json()
    assert body["trend"] is None and len(body["items"]) == 2
