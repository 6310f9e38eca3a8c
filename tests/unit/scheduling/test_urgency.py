"""The judgements scheduling's answers carry: urgency, near empty, abnormal flow (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.alerts.rules import flow_abnormal
from services.scheduling.urgency import is_flow_abnormal, is_near_empty, urgency_of
from shared.contracts.scheduling import FlowRecordedData

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_urgency_buckets() -> None:
    def at(hours: float) -> str:
        return urgency_of(due_at=NOW + timedelta(hours=hours), now=NOW, due_soon_hours=48)

    assert at(-1 / 60) == "overdue"
    assert at(0) == "due_today"  # due this very moment: not past yet
    assert at(11) == "due_today"  # 23:00 UTC the same day
    assert at(13) == "due_soon"  # 01:00 UTC the next day
    assert at(48) == "due_soon"  # the notice's edge is inside it, as the sweep announces it
    assert at(48.01) == "later"
    assert urgency_of(due_at=NOW + timedelta(hours=30), now=NOW, due_soon_hours=24) == "later"


def test_near_empty_within_the_margin_or_already_empty() -> None:
    def near(hours: float | None, margin: float = 72) -> bool:
        empty_at = None if hours is None else NOW + timedelta(hours=hours)
        return is_near_empty(projected_empty_at=empty_at, now=NOW, near_empty_hours=margin)

    assert near(-5) and near(0) and near(72)
    assert not near(72.01) and not near(None)
    assert not near(50, margin=24)


def test_flow_abnormal_outside_the_band_and_unknown_for_a_first_fill() -> None:
    assert is_flow_abnormal(None, flow_warning_pct=15) is None
    assert is_flow_abnormal(15.0, flow_warning_pct=15) is False  # the edge is within the band
    assert is_flow_abnormal(15.01, flow_warning_pct=15) is True
    assert is_flow_abnormal(-30.0, flow_warning_pct=15) is True
    assert is_flow_abnormal(30.0, flow_warning_pct=40) is False


@given(st.floats(min_value=-99, max_value=500, allow_nan=False))
def test_scheduling_calls_abnormal_exactly_what_alerts_raises_an_alert_for(deviation: float) -> None:
    data = FlowRecordedData(pump_serial="SN1", patient_mrn="MRN1", center="c",
                            measured_flow_ml_per_day=1.0, expected_flow_ml_per_day=1.0,
                            flow_deviation_pct=deviation, residual_volume_ml=1.0, elapsed_days=14.0,
                            refill_id="r1")
    raised = bool(flow_abnormal(data, warning_pct=15.0, critical_pct=25.0).raise_)
    assert is_flow_abnormal(deviation, flow_warning_pct=15.0) is raised
