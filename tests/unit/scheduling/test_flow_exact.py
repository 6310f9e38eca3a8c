"""The refill arithmetic of services/scheduling/flow.py at its boundaries and with its exact
messages (`make mutation` found comparisons, roundings and messages no test pinned)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.scheduling.flow import (
    DeliveryFacts,
    FlowFigures,
    PreviousFill,
    chemo_delivery_problem,
    elapsed_days_between,
    first_fill_type,
    flow_deviation_pct,
    hours_until,
    is_outside_window,
    measured_flow_ml_per_day,
    next_due,
    next_fill_type,
    projected_empty_at,
    refill_figures,
    refill_problems,
    start_of_day_utc,
    too_soon_message,
)

T = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def test_elapsed_days_are_fractional_from_the_previous_fill() -> None:
    assert elapsed_days_between(T, T + timedelta(days=1, hours=12)) == 1.5
    assert elapsed_days_between(T + timedelta(hours=6), T) == -0.25


def test_measured_flow_exact_and_refused_without_elapsed_time() -> None:
    assert measured_flow_ml_per_day(20.0, 11.0, 4.5) == 2.0
    assert measured_flow_ml_per_day(20.0, 11.0, 0.5) == 18.0
    for days in (0.0, -1.0):
        with pytest.raises(ValueError, match="^elapsed_days must be positive$"):
            measured_flow_ml_per_day(20.0, 11.0, days)


def test_deviation_exact_and_refused_without_expected_flow() -> None:
    assert flow_deviation_pct(1.2, 0.8) == pytest.approx(50.0, abs=1e-12)
    assert flow_deviation_pct(0.5, 0.5) == 0.0
    for expected in (0.0, -0.5):
        with pytest.raises(ValueError, match="^expected flow must be positive$"):
            flow_deviation_pct(1.0, expected)


def test_projected_empty_exact_and_none_without_flow() -> None:
    assert projected_empty_at(T, 30.0, 0.5) == T + timedelta(days=60)
    assert projected_empty_at(T, 30.0, 2.0) == T + timedelta(days=15)
    assert projected_empty_at(T, 30.0, None) is None
    assert projected_empty_at(T, 30.0, 0.0) is None
    assert projected_empty_at(T, 30.0, -1.0) is None


def test_hours_until_rounded_to_the_hundredth() -> None:
    assert hours_until(T, T + timedelta(hours=1, minutes=20, seconds=53)) == 1.35
    assert hours_until(T, T - timedelta(minutes=30)) == -0.5
    assert hours_until(T, T + timedelta(hours=100)) == 100.0
    assert hours_until(T, None) is None


def test_fill_sequence_of_each_regimen() -> None:
    assert first_fill_type("fudr_alternating") == "chemo"
    assert first_fill_type("saline_maintenance") == "saline"
    assert next_fill_type("saline_maintenance", "chemo") == "saline"
    assert next_fill_type("fudr_alternating", "chemo") == "saline"
    assert next_fill_type("fudr_alternating", "saline") == "chemo"


def test_start_of_day_is_midnight_utc() -> None:
    assert start_of_day_utc(date(2026, 11, 10)) == datetime(2026, 11, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("offset", "outside"), [
    (timedelta(days=2), False), (-timedelta(days=2), False),
    (timedelta(days=2, seconds=1), True), (-timedelta(days=2, seconds=1), True)])
def test_window_boundary_both_sides(offset: timedelta, outside: bool) -> None:
    assert is_outside_window(T + offset, T, 2.0) is outside


def test_next_due_without_a_projection_is_the_interval() -> None:
    assert next_due(performed_at=T, interval_days=14, projected_empty_at=None, near_empty_hours=48) \
        == (T + timedelta(days=14), "interval")


def test_next_due_interval_wins_a_tie_and_when_earlier() -> None:
    tie = T + timedelta(days=14, hours=48)
    assert next_due(performed_at=T, interval_days=14, projected_empty_at=tie, near_empty_hours=48) \
        == (T + timedelta(days=14), "interval")
    later = tie + timedelta(seconds=1)
    assert next_due(performed_at=T, interval_days=14, projected_empty_at=later, near_empty_hours=48) \
        == (T + timedelta(days=14), "interval")


def test_next_due_before_empty_when_earlier() -> None:
    empty = T + timedelta(days=10)
    assert next_due(performed_at=T, interval_days=14, projected_empty_at=empty, near_empty_hours=48) \
        == (T + timedelta(days=8), "projected_empty")


def test_next_due_never_before_the_fill() -> None:
    empty = T + timedelta(hours=20)
    assert next_due(performed_at=T, interval_days=14, projected_empty_at=empty, near_empty_hours=48) \
        == (T, "projected_empty")


def _problems(**kw: object) -> list[tuple[str, str]]:
    args = {"now": T + timedelta(days=20), "performed_at": T + timedelta(days=14),
            "residual_volume_ml": 5.0, "fill_volume_ml": 30.0, "reservoir_ml": 30.0,
            "previous": PreviousFill(T, 20.0, "r1"), "implanted_at": None, "min_interval_hours": 24.0,
            **kw}
    return refill_problems(**args)  # type: ignore[arg-type]


def test_possible_numbers_at_their_limits() -> None:
    assert _problems(residual_volume_ml=0.0) == []
    assert _problems(residual_volume_ml=20.0) == []  # all of the previous fill still in the pump
    assert _problems(fill_volume_ml=30.0) == []
    assert _problems(performed_at=T + timedelta(days=20)) == []  # now
    assert _problems(performed_at=T + timedelta(hours=24)) == []  # exactly the minimum interval
    assert _problems(previous=None, residual_volume_ml=30.0, implanted_at=T + timedelta(days=14)) == []
    assert _problems(previous=None, fill_volume_ml=0.5) == []


def test_each_impossible_number_with_its_message() -> None:
    assert _problems(residual_volume_ml=-0.5) == [("residual_volume_ml", "must not be negative")]
    assert _problems(fill_volume_ml=0.0) == [("fill_volume_ml", "must be positive")]
    assert _problems(fill_volume_ml=30.5) == [("fill_volume_ml", "30.5 mL is above the reservoir of 30.0 mL")]
    assert _problems(performed_at=T + timedelta(days=20, seconds=1)) \
        == [("performed_at", "lies in the future")]
    assert _problems(performed_at=T) == [
        ("performed_at", "is not after the previous fill (2026-11-02T08:00:00+00:00)")]
    assert _problems(residual_volume_ml=20.5) == [
        ("residual_volume_ml", "20.5 mL is above the 20.0 mL left at the previous fill")]


def test_a_fill_too_soon_after_the_previous_one() -> None:
    at = T + timedelta(hours=23, minutes=59)
    previous = PreviousFill(T, 20.0, "r1")
    assert _problems(performed_at=at) == [("performed_at", too_soon_message(at, previous, 24.0))]


def test_first_fill_checked_against_the_reservoir_and_the_implant() -> None:
    assert _problems(previous=None, residual_volume_ml=30.5) == [
        ("residual_volume_ml", "30.5 mL is above the reservoir of 30.0 mL")]
    assert _problems(previous=None, implanted_at=T + timedelta(days=14, seconds=1)) == [
        ("performed_at", "is before the pump was implanted")]
    # with a previous fill the implant date is not what is checked
    assert _problems(implanted_at=T + timedelta(days=15)) == []


def test_too_soon_message_names_the_refill_to_correct() -> None:
    at = T + timedelta(hours=5, minutes=15)
    assert too_soon_message(at, PreviousFill(T, 20.0, "r1"), 24.0) == (
        "is 5.2 h after the previous fill of this pump (2026-11-02T08:00:00+00:00); fills of one pump "
        "must be at least 24 h apart; if the previous refill was recorded in error, mark it "
        "entered-in-error (POST /v1/refills/r1/entered-in-error) first")
    assert "(POST /v1/refills/{id}/entered-in-error)" in too_soon_message(at, PreviousFill(T, 20.0), 12.5)
    assert "at least 12.5 h apart" in too_soon_message(at, PreviousFill(T, 20.0), 12.5)
    # 100.06 h (hours of 3600 s, not 3601)
    assert too_soon_message(T + timedelta(hours=100, minutes=3, seconds=36), PreviousFill(T, 20.0), 120) \
        .startswith("is 100.1 h after the previous fill")


BUD = T + timedelta(days=3)
GOOD = DeliveryFacts(id="o1", appointment_id="a1", patient_mrn="MRN1", status="delivered", beyond_use_at=BUD)


def _chemo(delivery: DeliveryFacts | None = GOOD, **kw: object) -> str | None:
    args = {"delivery_id": "o1", "delivery": delivery, "appointment_id": "a1", "patient_mrn": "MRN1",
            "performed_at": T, "now": T, **kw}
    return chemo_delivery_problem(**args)  # type: ignore[arg-type]


def test_a_chemo_fill_with_its_delivery_passes() -> None:
    assert _chemo() is None
    assert _chemo(DeliveryFacts("o1", "a1", "MRN1", "dispatched", None)) is None
    assert _chemo(performed_at=BUD, now=BUD) is None  # at the beyond-use time itself


@pytest.mark.parametrize("delivery_id", [None, ""])
def test_a_chemo_fill_without_an_order_id(delivery_id: str | None) -> None:
    assert _chemo(delivery_id=delivery_id) == (
        "a chemo fill needs the delivery order id printed on the bag's label (scan it); none was given")


def test_a_chemo_fill_with_an_unknown_order() -> None:
    assert _chemo(None) == "no delivery order o1; scan the order id on the bag's label"


@pytest.mark.parametrize("kw", [{"patient_mrn": "MRN2"}, {"appointment_id": None}, {"appointment_id": "a2"}])
def test_a_chemo_fill_with_someone_elses_order(kw: dict[str, object]) -> None:
    assert _chemo(**kw) == ("delivery order o1 is not the one ordered for this patient's appointment; "
                            "check the bag belongs to this patient")


@pytest.mark.parametrize("status", ["requested", "accepted", "compounded", "cancelled"])
def test_a_chemo_fill_with_an_order_not_yet_dispatched(status: str) -> None:
    order = DeliveryFacts("o1", "a1", "MRN1", status, BUD)
    assert _chemo(order) == (f"delivery order o1 is {status}: the pharmacy has not dispatched it yet, "
                             "so the bag cannot be in hand")


def test_a_chemo_fill_past_the_beyond_use_time() -> None:
    late = BUD + timedelta(seconds=1)
    assert _chemo(performed_at=late, now=late) == (
        "delivery order o1 was past its beyond-use time (2026-11-05T08:00:00+00:00) at the fill; "
        "do not use it")
    assert _chemo(now=late) == (
        "delivery order o1 is past its beyond-use time (2026-11-05T08:00:00+00:00); do not use it")


def test_refill_figures_rounded_as_stored() -> None:
    # 20 mL, 10 days 1 h later 11 mL withdrawn: 9 / 10.041666 = 0.896265 mL/day; labeled 0.7
    at = T + timedelta(days=10, hours=1)
    figures = refill_figures(performed_at=at, residual_volume_ml=11.0, fill_volume_ml=28.0,
                             labeled_flow_ml_per_day=0.7, previous=PreviousFill(T, 20.0))
    measured = 9 / (10 + 1 / 24)
    assert figures == FlowFigures(elapsed_days=10.0417, measured_flow_ml_per_day=0.8963,
                                  expected_flow_ml_per_day=0.7, flow_deviation_pct=28.04,
                                  projected_empty_at=at + timedelta(days=28.0 / measured))


def test_first_refill_figures_use_the_labeled_flow() -> None:
    assert refill_figures(performed_at=T, residual_volume_ml=0, fill_volume_ml=30.0,
                          labeled_flow_ml_per_day=1.5, previous=None) \
        == FlowFigures(None, None, 1.5, None, T + timedelta(days=20))
