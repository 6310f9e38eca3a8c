"""The refill safety rules of DOMAIN.md as pure functions (no database): the minimum time
between two fills, the chemo fill's delivery, and the next due time with its basis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.scheduling.flow import (
    DeliveryFacts,
    PreviousFill,
    chemo_delivery_problem,
    next_due,
    refill_problems,
)

T = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
PREV = PreviousFill(T, 30.0, "r-prev")


def _problems(performed_at: datetime, *, min_interval_hours: float = 24.0,
              previous: PreviousFill | None = PREV) -> list[tuple[str, str]]:
    return refill_problems(now=T + timedelta(days=30), performed_at=performed_at,
                           residual_volume_ml=30.0, fill_volume_ml=30.0, reservoir_ml=30.0,
                           previous=previous, implanted_at=None,
                           min_interval_hours=min_interval_hours)


def test_a_refill_minutes_after_the_previous_one_is_refused_with_how_to_correct_it() -> None:
    [(field, message)] = _problems(T + timedelta(minutes=4))
    assert field == "performed_at"
    assert "0.1 h after the previous fill" in message and "at least 24 h apart" in message
    assert ("if the previous refill was recorded in error, mark it entered-in-error "
            "(POST /v1/refills/r-prev/entered-in-error) first") in message


def test_the_minimum_interval_is_a_setting_and_its_bound_is_allowed() -> None:
    assert _problems(T + timedelta(hours=24)) == []
    assert [f for f, _ in _problems(T + timedelta(hours=23, minutes=59))] == ["performed_at"]
    assert _problems(T + timedelta(hours=7), min_interval_hours=6) == []
    assert [f for f, _ in _problems(T + timedelta(hours=7), min_interval_hours=8)] == ["performed_at"]
    assert _problems(T + timedelta(minutes=4), previous=None) == []  # a first fill


@given(minutes=st.integers(min_value=1, max_value=60 * 24 * 29))
def test_a_fill_is_refused_exactly_when_it_comes_too_soon(minutes: int) -> None:
    fields = [f for f, _ in _problems(T + timedelta(minutes=minutes))]
    assert (fields == ["performed_at"]) == (minutes < 24 * 60)


# ------------------------------------------------------------------ the chemo fill's delivery

def _delivery(**kw: Any) -> DeliveryFacts:
    base: dict[str, Any] = {"id": "ord-1", "appointment_id": "a-1", "patient_mrn": "MRN1",
                            "status": "dispatched", "beyond_use_at": T + timedelta(days=2)}
    return DeliveryFacts(**{**base, **kw})


def _chemo(delivery: DeliveryFacts | None, *, delivery_id: str | None = "ord-1",
           appointment_id: str | None = "a-1", performed_at: datetime = T,
           now: datetime = T) -> str | None:
    return chemo_delivery_problem(delivery_id=delivery_id, delivery=delivery,
                                  appointment_id=appointment_id, patient_mrn="MRN1",
                                  performed_at=performed_at, now=now)


def test_a_chemo_fill_uses_this_appointments_dispatched_or_delivered_order() -> None:
    assert _chemo(_delivery()) is None
    assert _chemo(_delivery(status="delivered")) is None
    assert _chemo(_delivery(beyond_use_at=None)) is None  # the pharmacy gave none


def test_a_chemo_fill_without_its_order_is_refused_in_plain_words() -> None:
    assert "delivery order id printed on the bag's label" in (_chemo(None, delivery_id=None) or "")
    assert "no delivery order ord-9" in (_chemo(None, delivery_id="ord-9") or "")
    for status in ("requested", "accepted", "compounded", "rejected", "cancelled"):
        assert f"is {status}" in (_chemo(_delivery(status=status)) or ""), status
    assert "not the one ordered for this patient's appointment" in (
        _chemo(_delivery(patient_mrn="MRN2")) or "")
    assert "not the one ordered" in (_chemo(_delivery(appointment_id="a-2")) or "")
    assert "not the one ordered" in (_chemo(_delivery(), appointment_id=None) or "")


def test_a_chemo_fill_past_the_beyond_use_time_is_refused_at_the_fill_and_now() -> None:
    bud = T + timedelta(days=2)
    assert _chemo(_delivery(), performed_at=bud, now=bud) is None  # the last moment is fine
    at_fill = _chemo(_delivery(), performed_at=bud + timedelta(minutes=1), now=bud + timedelta(hours=1))
    assert at_fill is not None and "at the fill" in at_fill
    now_past = _chemo(_delivery(), performed_at=T, now=bud + timedelta(minutes=1))
    assert now_past is not None and "is past its beyond-use time" in now_past


# ------------------------------------------------------------------ the next due time

def test_the_interval_wins_while_the_pump_lasts() -> None:
    due, basis = next_due(performed_at=T, interval_days=14, projected_empty_at=T + timedelta(days=30),
                          near_empty_hours=72)
    assert (due, basis) == (T + timedelta(days=14), "interval")
    assert next_due(performed_at=T, interval_days=14, projected_empty_at=None,
                    near_empty_hours=72) == (T + timedelta(days=14), "interval")


def test_a_pump_that_runs_dry_sooner_is_due_before_it_does() -> None:
    due, basis = next_due(performed_at=T, interval_days=14, projected_empty_at=T + timedelta(days=10),
                          near_empty_hours=72)
    assert (due, basis) == (T + timedelta(days=7), "projected_empty")
    # running dry within the margin: due at once, never before the fill
    assert next_due(performed_at=T, interval_days=14, projected_empty_at=T + timedelta(hours=30),
                    near_empty_hours=72) == (T, "projected_empty")


@given(interval_days=st.integers(min_value=1, max_value=120),
       empty_hours=st.one_of(st.none(), st.floats(min_value=0.1, max_value=24 * 400,
                                                  allow_nan=False)),
       margin_hours=st.integers(min_value=0, max_value=240))
def test_next_due_properties(interval_days: int, empty_hours: float | None,
                             margin_hours: int) -> None:
    empty = None if empty_hours is None else T + timedelta(hours=empty_hours)
    due, basis = next_due(performed_at=T, interval_days=interval_days, projected_empty_at=empty,
                          near_empty_hours=margin_hours)
    by_interval = T + timedelta(days=interval_days)
    assert T <= due <= by_interval
    if empty is not None:
        before_empty = empty - timedelta(hours=margin_hours)
        if before_empty > T:
            assert due <= before_empty
        assert basis == ("projected_empty" if before_empty < by_interval else "interval")
        assert due == (by_interval if basis == "interval" else max(before_empty, T))
    else:
        assert (due, basis) == (by_interval, "interval")
