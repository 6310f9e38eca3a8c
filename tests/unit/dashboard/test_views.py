"""Presentation logic: worklist order, chart geometry, scanner input."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.dashboard.views import (
    build_worklist,
    flow_chart,
    iso_z,
    normalize_udi,
    parse_lots,
)
from tests.factories import T0


def test_worklist_sorts_by_scheduling_urgency_then_due_time_and_keeps_its_near_empty() -> None:
    appts: list[dict[str, Any]] = [
        {"pump_serial": "B", "due_at": iso_z(T0 + timedelta(days=5)),
         "projected_empty_at": iso_z(T0 + timedelta(hours=70)), "urgency": "later",
         "near_empty": True},
        {"pump_serial": "A", "due_at": iso_z(T0 - timedelta(hours=2)),
         "projected_empty_at": iso_z(T0 - timedelta(hours=1)), "urgency": "overdue",
         "near_empty": True},
        {"pump_serial": "C", "due_at": iso_z(T0 - timedelta(days=2)), "projected_empty_at": None,
         "urgency": "overdue", "near_empty": False},
        # scheduling's due-soon notice is longer than the clock suggests: its word counts
        {"pump_serial": "D", "due_at": iso_z(T0 + timedelta(days=4)), "projected_empty_at": None,
         "urgency": "due_soon", "near_empty": False},
        {"pump_serial": "E", "due_at": iso_z(T0 + timedelta(days=1)), "projected_empty_at": None},
    ]
    rows = build_worklist(appts, T0)
    # a near-empty pump comes right after the overdue ones, whatever its due time
    assert [r.appointment["pump_serial"] for r in rows] == ["C", "A", "B", "D", "E"]
    assert [r.urgency for r in rows] == ["overdue", "overdue", "later", "due_soon", "later"]
    assert [r.near_empty for r in rows] == [False, True, True, False, False]
    assert rows[1].empty_already and not rows[4].empty_already


def test_chart_band_encloses_the_labeled_rate_and_fast_flow_plots_higher() -> None:
    readings: list[dict[str, Any]] = [
        {"performed_at": "2026-10-01T08:00:00Z", "measured_flow_ml_per_day": None},
        {"performed_at": "2026-10-15T08:00:00Z", "measured_flow_ml_per_day": 1.0, "flow_deviation_pct": 0,
         "flow_abnormal": False, "flow_warning_pct": 15.0},
        {"performed_at": "2026-10-29T08:00:00Z", "measured_flow_ml_per_day": 1.3, "flow_deviation_pct": 30,
         "flow_abnormal": True, "flow_warning_pct": 15.0},
    ]
    chart = flow_chart(readings, 1.0)
    assert chart.band_pct == 15.0
    assert len(chart.points) == 2  # the first fill has no measurement
    assert chart.band_top_y is not None and chart.band_bottom_y is not None
    assert chart.band_top_y < chart.labeled_y < chart.band_bottom_y  # type: ignore[operator]
    low, high = chart.points
    assert high.y < low.y and high.x > low.x
    assert high.abnormal and not low.abnormal
    assert low.y == chart.labeled_y


def test_chart_draws_the_trend_from_the_last_reading_to_the_prediction() -> None:
    readings = [{"performed_at": f"2026-10-{d:02d}T08:00:00Z", "measured_flow_ml_per_day": flow,
                 "flow_deviation_pct": (flow - 1) * 100, "flow_warning_pct": 15.0}
                for d, flow in ((1, 1.02), (15, 1.06), (29, 1.10))]
    trend = {"predicted_at": "2026-11-12T08:00:00Z", "predicted_flow_ml_per_day": 1.16,
             "predicted_deviation_pct": 16.0}
    chart = flow_chart(readings, 1.0, trend=trend)
    assert chart.projection is not None
    x1, y1, x2, y2 = chart.projection
    last = chart.points[-1]
    assert (x1, y1) == (last.x, last.y)
    assert x2 == chart.plot_right and y2 < chart.band_top_y < y1  # type: ignore[operator]
    assert "+16.0 %" in chart.projection_label
    assert flow_chart(readings, 1.0).projection is None
    assert flow_chart([], 1.0, trend=trend).projection is None


def test_chart_without_readings_draws_the_labeled_rate_without_a_band() -> None:
    chart = flow_chart([], 1.0)
    assert not chart.points and chart.labeled_y is not None
    assert chart.band_pct is None and chart.band_top_y is None  # the band is scheduling's
    assert flow_chart([], None).labeled_y is None


def test_a_point_is_abnormal_as_scheduling_judged_it() -> None:
    judged = [{"performed_at": "2026-10-15T08:00:00Z", "measured_flow_ml_per_day": 1.3,
               "flow_deviation_pct": 30.0, "flow_abnormal": False, "flow_warning_pct": 40.0}]
    (point,) = flow_chart(judged, 1.0).points
    assert not point.abnormal


@given(st.floats(min_value=0.05, max_value=10), st.floats(min_value=0.05, max_value=10),
       st.booleans())
def test_every_point_lies_inside_the_plot(labeled: float, measured: float, abnormal: bool) -> None:
    chart = flow_chart([{"performed_at": "2026-10-15T08:00:00Z", "measured_flow_ml_per_day": measured,
                         "flow_abnormal": abnormal, "flow_warning_pct": 15.0}], labeled)
    (point,) = chart.points
    assert chart.plot_top <= point.y <= chart.plot_bottom
    assert point.abnormal == abnormal


def test_scanner_group_separators_become_gs() -> None:
    assert normalize_udi(" 0100812345000016<GS>21SN1\n") == "0100812345000016\x1d21SN1"
    assert normalize_udi("01X\\x1d21Y") == "01X\x1d21Y"
    assert normalize_udi("(01)00812345000016(21)SN1") == "(01)00812345000016(21)SN1"


def test_lots_split() -> None:
    assert parse_lots("L1, L2;L3\nL4") == ["L1", "L2", "L3", "L4"]


def test_worklist_order_overdue_near_empty_critical_alert_due_today_due_soon_later() -> None:
    def appt(serial: str, due_hours: float, urgency: str, near_empty: bool = False) -> dict[str, Any]:
        return {"pump_serial": serial, "due_at": iso_z(T0 + timedelta(hours=due_hours)),
                "projected_empty_at": None, "urgency": urgency, "near_empty": near_empty}

    def alert(serial: str, severity: str, status: str = "firing") -> dict[str, Any]:
        return {"id": f"al-{serial}-{severity}", "pump_serial": serial, "severity": severity,
                "status": status, "last_raised_at": iso_z(T0)}

    appts = [appt("LATER", 300, "later"), appt("SOON", 30, "due_soon"),
             appt("TODAY", 3, "due_today"), appt("FLOW", 200, "later"),
             appt("EMPTY", 250, "later", near_empty=True), appt("OVERDUE", -5, "overdue"),
             appt("WARNED", 100, "later"), appt("DONE", 150, "later")]
    alerts = [alert("FLOW", "critical", "acknowledged"), alert("WARNED", "warning"),
              alert("DONE", "critical", "resolved"), alert("OVERDUE", "critical"),
              alert("OVERDUE", "info")]
    rows = build_worklist(appts, T0, alerts)
    assert [r.appointment["pump_serial"] for r in rows] == [
        "OVERDUE", "EMPTY", "FLOW", "TODAY", "SOON", "WARNED", "DONE", "LATER"]
    assert [r.rank for r in rows] == ["overdue", "near_empty", "critical_alert", "due_today",
                                      "due_soon", "later", "later", "later"]
    by_serial = {r.appointment["pump_serial"]: r for r in rows}
    # each row carries its pump's open alerts, most severe first; a resolved one is gone
    assert [a["severity"] for a in by_serial["OVERDUE"].alerts] == ["critical", "info"]
    assert by_serial["DONE"].alerts == [] and not by_serial["DONE"].critical_alert
    assert by_serial["WARNED"].alerts and not by_serial["WARNED"].critical_alert
    # no alert answer at all: scheduling's order alone
    assert [r.rank for r in build_worklist(appts, T0)][:2] == ["overdue", "near_empty"]
