"""The refill and dose arithmetic of DOMAIN.md against hand-computed cases, and as properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.scheduling.deliveries import decide
from services.scheduling.dosing import (
    DosingError,
    DosingWeight,
    dosing_weight_kg,
    fudr_amount_mg,
    fudr_line,
    ideal_body_weight_kg,
    in_label_range,
    order_drug_lines,
)
from services.scheduling.flow import (
    PreviousFill,
    flow_deviation_pct,
    is_outside_window,
    measured_flow_ml_per_day,
    next_fill_type,
    projected_empty_at,
    refill_figures,
    refill_outcome,
    refill_problems,
)

T = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
volumes = st.floats(min_value=0.5, max_value=60, allow_nan=False)
flows = st.floats(min_value=0.05, max_value=5, allow_nan=False)


def test_hand_computed_refill() -> None:
    """Fill 30 mL, 16.0 mL left after 14 days: 1.0 mL/day; labeled 0.8 → +25 %."""
    figures = refill_figures(performed_at=T + timedelta(days=14), residual_volume_ml=16.0,
                             fill_volume_ml=30.0, labeled_flow_ml_per_day=0.8,
                             previous=PreviousFill(T, 30.0))
    assert figures.elapsed_days == 14
    assert figures.measured_flow_ml_per_day == pytest.approx(1.0)
    assert figures.flow_deviation_pct == pytest.approx(25.0)
    assert figures.projected_empty_at == T + timedelta(days=14 + 30)


def test_first_fill_uses_labeled_flow() -> None:
    figures = refill_figures(performed_at=T, residual_volume_ml=0, fill_volume_ml=30.0,
                             labeled_flow_ml_per_day=1.5, previous=None)
    assert figures.measured_flow_ml_per_day is None and figures.flow_deviation_pct is None
    assert figures.projected_empty_at == T + timedelta(days=20)


def test_hand_computed_dose() -> None:
    """0.12 mg/kg/day × 70 kg × 30 mL / 1.0 mL/day = 252 mg, with its basis."""
    assert fudr_amount_mg(dose_mg_per_kg_day=0.12, weight_kg=70, fill_volume_ml=30,
                          flow_ml_per_day=1.0) == pytest.approx(252.0)
    line = fudr_line(dose_mg_per_kg_day=0.12, weight=DosingWeight(70, None), fill_volume_ml=30,
                     flow_ml_per_day=1.0, flow_source="labeled")
    assert line.amount == 252.0 and line.unit == "mg"
    assert line.basis.startswith("0.12 mg/kg/day x 70 kg x 30 mL / 1.0 mL/day")


def test_adjusted_weight_hand_computed() -> None:
    """Man, 175.26 cm (5 ft 9 in): IBW 50 + 2.3 × 9 = 70.7 kg; 100 kg is > 125 % → (100+70.7)/2."""
    assert ideal_body_weight_kg(175.26, "male") == pytest.approx(70.7)
    assert ideal_body_weight_kg(175.26, "female") == pytest.approx(66.2)
    w = dosing_weight_kg(actual_kg=100, mode="adjusted", height_cm=175.26, sex="male",
                         adjusted_threshold_pct=25)
    assert w.kg == pytest.approx(85.35)
    same = dosing_weight_kg(actual_kg=80, mode="adjusted", height_cm=175.26, sex="male",
                            adjusted_threshold_pct=25)
    assert same.kg == 80
    with pytest.raises(DosingError) as err:
        dosing_weight_kg(actual_kg=80, mode="adjusted", height_cm=None, sex="male",
                         adjusted_threshold_pct=25)
    assert err.value.field == "dosing_weight"


def test_additives_only_when_set() -> None:
    base: dict[str, Any] = {"dose_mg_per_kg_day": 0.12, "weight": DosingWeight(70, None),
                            "fill_volume_ml": 30, "flow_ml_per_day": 1.0, "flow_source": "labeled"}
    assert [d.code for d in order_drug_lines(**base, dexamethasone_mg=None, heparin_units=None)] \
        == ["floxuridine"]
    lines = order_drug_lines(**base, dexamethasone_mg=20, heparin_units=30000)
    assert [(d.code, d.amount, d.unit) for d in lines] == [
        ("floxuridine", 252.0, "mg"), ("dexamethasone", 20, "mg"), ("heparin", 30000, "units")]


def test_label_range() -> None:
    assert in_label_range(0.1, minimum=0.1, maximum=0.6)
    assert in_label_range(0.6, minimum=0.1, maximum=0.6)
    assert not in_label_range(0.08, minimum=0.1, maximum=0.6)
    assert not in_label_range(0.7, minimum=0.1, maximum=0.6)


def test_fill_sequence_and_window() -> None:
    assert next_fill_type("fudr_alternating", "chemo") == "saline"
    assert next_fill_type("fudr_alternating", "saline") == "chemo"
    assert next_fill_type("saline_maintenance", "saline") == "saline"
    assert not is_outside_window(T + timedelta(days=4), T, 4)
    assert is_outside_window(T - timedelta(days=4, seconds=1), T, 4)


def test_refill_outcome_hand_computed() -> None:
    """1.0 mL/day, refilled with 30 mL: empty at day 44, 72 h margin → day 41; the 14-day
    interval (day 28) comes first. At 2.0 mL/day it is empty at day 29: due at day 26."""
    common: dict[str, Any] = {
        "performed_at": T + timedelta(days=14), "fill_volume_ml": 30.0, "fill_type": "chemo",
        "labeled_flow_ml_per_day": 0.8, "previous": PreviousFill(T, 30.0),
        "regimen": "fudr_alternating", "refill_interval_days": 14, "window_days": 4,
        "near_empty_hours": 72}
    steady = refill_outcome(residual_volume_ml=16.0, appointment_due_at=T + timedelta(days=10),
                            **common)
    assert steady.figures.measured_flow_ml_per_day == pytest.approx(1.0)
    assert (steady.next_due_at, steady.next_due_basis) == (T + timedelta(days=28), "interval")
    assert steady.next_fill_type == "saline" and not steady.outside_window
    fast = refill_outcome(residual_volume_ml=2.0, appointment_due_at=T + timedelta(days=9),
                          **common)
    assert fast.figures.projected_empty_at == T + timedelta(days=29)
    assert (fast.next_due_at, fast.next_due_basis) == (T + timedelta(days=26), "projected_empty")
    assert fast.outside_window
    assert not refill_outcome(residual_volume_ml=2.0, appointment_due_at=None,
                              **common).outside_window
    # the therapy's regimen sets the next fill: after a saline fill of an alternating one, chemo
    after_saline = refill_outcome(residual_volume_ml=16.0, appointment_due_at=None,
                                  **{**common, "fill_type": "saline"})
    assert after_saline.next_fill_type == "chemo"


def test_impossible_numbers_name_their_field() -> None:
    prev = PreviousFill(T, 20.0)

    def fields(**kw: object) -> set[str]:
        args = {"now": T + timedelta(days=20), "performed_at": T + timedelta(days=14),
                "residual_volume_ml": 5.0, "fill_volume_ml": 30.0, "reservoir_ml": 30.0,
                "previous": prev, "implanted_at": None, "min_interval_hours": 24.0, **kw}
        return {f for f, _ in refill_problems(**args)}  # type: ignore[arg-type]

    assert fields() == set()
    assert fields(residual_volume_ml=21.0) == {"residual_volume_ml"}
    assert fields(residual_volume_ml=-1.0) == {"residual_volume_ml"}
    assert fields(fill_volume_ml=31.0) == {"fill_volume_ml"}
    assert fields(performed_at=T + timedelta(days=21)) == {"performed_at"}
    assert fields(performed_at=T - timedelta(hours=1)) == {"performed_at"}
    assert fields(performed_at=T) == {"performed_at"}


def test_order_statuses_never_go_backwards() -> None:
    assert decide("requested", "accepted") == "apply"
    assert decide("requested", "dispatched") == "apply"  # a skipped step is fine
    assert decide("delivered", "accepted") == "late"
    assert decide("dispatched", "compounded") == "late"
    assert decide("accepted", "accepted") == "duplicate"
    assert decide("compounded", "rejected") == "apply"
    assert decide("rejected", "delivered") == "late"


@given(volume=volumes, flow=flows, days=st.floats(min_value=0.5, max_value=60))
def test_measured_equal_to_labeled_gives_zero_deviation(volume: float, flow: float,
                                                         days: float) -> None:
    residual = volume - flow * days
    if residual < 0:
        return
    measured = measured_flow_ml_per_day(volume, residual, days)
    assert measured == pytest.approx(flow)
    assert flow_deviation_pct(measured, flow) == pytest.approx(0.0, abs=1e-6)


@given(flow=flows, pct=st.floats(min_value=-90, max_value=300, allow_nan=False))
def test_deviation_is_the_percentage_above_the_expected_flow(flow: float, pct: float) -> None:
    measured = flow * (1 + pct / 100)
    assert flow_deviation_pct(measured, flow) == pytest.approx(pct, abs=1e-6)
    assert flow_deviation_pct(2 * flow, flow) == pytest.approx(100.0)
    assert flow_deviation_pct(flow / 2, flow) == pytest.approx(-50.0)


@given(small=volumes, extra=st.floats(min_value=0.01, max_value=30), flow=flows)
def test_projected_empty_is_monotone_in_fill_volume(small: float, extra: float, flow: float) -> None:
    a = projected_empty_at(T, small, flow)
    b = projected_empty_at(T, small + extra, flow)
    assert a is not None and b is not None and a < b


@given(volume=volumes, slow=flows, extra=st.floats(min_value=0.01, max_value=3))
def test_faster_flow_empties_sooner(volume: float, slow: float, extra: float) -> None:
    a = projected_empty_at(T, volume, slow)
    b = projected_empty_at(T, volume, slow + extra)
    assert a is not None and b is not None and b < a


@given(dose=st.floats(min_value=0.1, max_value=0.6), weight=st.floats(min_value=30, max_value=200),
       volume=volumes, flow=flows, k=st.floats(min_value=1.01, max_value=3))
def test_dose_linear_in_dose_and_weight_inverse_in_flow(dose: float, weight: float, volume: float,
                                                        flow: float, k: float) -> None:
    base = fudr_amount_mg(dose_mg_per_kg_day=dose, weight_kg=weight, fill_volume_ml=volume,
                          flow_ml_per_day=flow)
    assert fudr_amount_mg(dose_mg_per_kg_day=dose * k, weight_kg=weight, fill_volume_ml=volume,
                          flow_ml_per_day=flow) == pytest.approx(base * k)
    assert fudr_amount_mg(dose_mg_per_kg_day=dose, weight_kg=weight, fill_volume_ml=volume,
                          flow_ml_per_day=flow * k) == pytest.approx(base / k)
    # the mg per day delivered equals dose x weight, whatever the volume and flow
    assert base / (volume / flow) == pytest.approx(dose * weight)
