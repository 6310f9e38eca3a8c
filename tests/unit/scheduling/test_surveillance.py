"""Flow surveillance arithmetic against figures computed by hand (or printed in textbooks and t
tables), and the lot test on simulated consortium data (tests/consortium.py)."""

from __future__ import annotations

import math
import random
import statistics
from datetime import timedelta

import pytest

from services.scheduling.surveillance import (
    GroupSums,
    LotDriftRule,
    TrendRule,
    flow_trend,
    judge_lot,
    pump_contribution,
    reading_delta,
    regularized_incomplete_beta,
    t_critical,
    t_two_sided_p,
    welch_t_test,
)
from tests.consortium import detection, false_alarm_rate, replay, simulate_model
from tests.factories import T0

# ---- the t distribution: closed forms and the t table -------------------------------------


@pytest.mark.parametrize("t", [0.0, 0.5, 1.0, 3.0, 12.0])
def test_one_degree_of_freedom_is_the_cauchy_distribution(t: float) -> None:
    # P(|T| > t) = 1 − 2·atan(t)/π for df = 1
    assert t_two_sided_p(t, 1) == pytest.approx(1 - 2 * math.atan(t) / math.pi, abs=1e-12)


@pytest.mark.parametrize("t", [0.3, 1.5, 4.0, -2.0])
def test_two_degrees_of_freedom_closed_form(t: float) -> None:
    # P(|T| > t) = 1 − |t| / √(2 + t²) for df = 2
    assert t_two_sided_p(t, 2) == pytest.approx(1 - abs(t) / math.sqrt(2 + t * t), abs=1e-12)


@pytest.mark.parametrize(("df", "alpha", "table"), [
    (1, 0.05, 12.706), (2, 0.05, 4.303), (5, 0.05, 2.571), (10, 0.05, 2.228), (10, 0.01, 3.169),
    (30, 0.05, 2.042), (30, 0.001, 3.646), (1e7, 0.05, 1.960),
])
def test_critical_values_are_the_t_tables(df: float, alpha: float, table: float) -> None:
    assert t_critical(df, alpha) == pytest.approx(table, abs=5e-4)
    assert t_two_sided_p(table, df) == pytest.approx(alpha, rel=2e-3)


def test_incomplete_beta_known_values() -> None:
    # I_x(1, 1) = x; I_x(2, 1) = x²; I_x(a, b) = 1 − I_(1−x)(b, a)
    assert regularized_incomplete_beta(1, 1, 0.3) == pytest.approx(0.3)
    assert regularized_incomplete_beta(2, 1, 0.3) == pytest.approx(0.09)
    assert regularized_incomplete_beta(2.5, 4, 0.7) == pytest.approx(
        1 - regularized_incomplete_beta(4, 2.5, 0.3))
    assert regularized_incomplete_beta(3, 2, 0.0) == 0.0
    assert regularized_incomplete_beta(3, 2, 1.0) == 1.0
    with pytest.raises(ValueError):
        regularized_incomplete_beta(1, 1, 1.5)
    with pytest.raises(ValueError):
        t_two_sided_p(1.0, 0)
    assert t_two_sided_p(math.inf, 4) == 0.0


# ---- Welch's t-test -------------------------------------------------------------------------

A1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
A2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]


def test_welch_matches_the_textbook_example() -> None:
    # Wikipedia, "Welch's t-test", example 1: t = −2.46, ν ≈ 24.99, p = 0.021
    result = welch_t_test(statistics.mean(A1), statistics.variance(A1), len(A1),
                          statistics.mean(A2), statistics.variance(A2), len(A2))
    assert result is not None
    assert result.difference == pytest.approx(-2.1667, abs=1e-4)
    assert result.t == pytest.approx(-2.4554, abs=1e-4)
    assert result.df == pytest.approx(24.9885, abs=1e-3)
    assert result.p_value == pytest.approx(0.02138, abs=1e-4)
    low, high = result.ci95()
    # by hand: 2.0595 (t table, df 25, 0.975) × SE 0.8824 = 1.8174
    assert low == pytest.approx(-2.1667 - 1.8174, abs=2e-3)
    assert high == pytest.approx(-2.1667 + 1.8174, abs=2e-3)


def test_welch_by_hand_small_groups() -> None:
    # lot means 8, 9, 10 (var 1) vs rest 0, 1, 2, 3 (var 5/3):
    # SE² = 1/3 + (5/3)/4 = 0.75, t = (9 − 1.5)/√0.75 = 8.6603,
    # ν = 0.75² / ((1/3)²/2 + (5/12)²/3) = 0.5625 / (0.05556 + 0.05787) = 4.959
    result = welch_t_test(9.0, 1.0, 3, 1.5, 5 / 3, 4)
    assert result is not None
    assert result.t == pytest.approx(8.6603, abs=1e-4)
    assert result.df == pytest.approx(4.959, abs=1e-3)
    assert result.p_value < 0.001


def test_welch_needs_two_per_group_and_some_spread() -> None:
    assert welch_t_test(1.0, 1.0, 1, 0.0, 1.0, 5) is None
    assert welch_t_test(1.0, 0.0, 3, 0.0, 0.0, 5) is None


# ---- running sums -----------------------------------------------------------------------------

def test_group_sums_give_the_mean_and_sample_variance_of_pump_means() -> None:
    sums = GroupSums()
    for mean in (8.0, 9.0, 10.0):
        sums = sums + GroupSums(1, mean, mean * mean, 2)
    assert sums.mean_pct == 9.0
    assert sums.variance == pytest.approx(1.0)
    assert sums.readings == 6
    assert GroupSums().mean_pct is None
    assert GroupSums(1, 4.0, 16.0, 1).variance == 0.0


def test_a_pump_counts_once_it_has_its_minimum_readings() -> None:
    assert pump_contribution(1, 6.0, min_readings=2) == GroupSums()
    assert pump_contribution(2, 6.0, min_readings=2) == GroupSums(1, 3.0, 9.0, 2)


def test_incremental_sums_equal_the_sums_from_scratch() -> None:
    rng = random.Random(7)
    readings = {f"P{i}": [rng.gauss(3, 4) for _ in range(rng.randint(1, 6))] for i in range(8)}
    running = GroupSums()
    state: dict[str, tuple[int, float]] = {}
    for serial, devs in readings.items():
        for dev in devs:
            n, total = state.get(serial, (0, 0.0))
            running = running + reading_delta(n, total, dev, min_readings=2)
            state[serial] = (n + 1, total + dev)
    scratch = GroupSums()
    for devs in readings.values():
        scratch = scratch + pump_contribution(len(devs), sum(devs), min_readings=2)
    assert running.pumps == scratch.pumps
    assert running.readings == scratch.readings
    assert running.sum_mean_pct == pytest.approx(scratch.sum_mean_pct)
    assert running.sum_mean_sq == pytest.approx(scratch.sum_mean_sq)
    # withdrawing a reading (entered in error) undoes it
    n, total = state["P0"]
    last = readings["P0"][-1]
    undone = running + reading_delta(n, total, last, min_readings=2, sign=-1)
    redone = undone + reading_delta(n - 1, total - last, last, min_readings=2)
    assert redone.sum_mean_pct == pytest.approx(running.sum_mean_pct)
    assert redone.pumps == running.pumps


# ---- the lot verdict -----------------------------------------------------------------------

def _group(means: list[float], readings_each: int = 2) -> GroupSums:
    return GroupSums(len(means), sum(means), sum(m * m for m in means), readings_each * len(means))


RULE = LotDriftRule(min_pumps=3, min_rest_pumps=4, alpha=0.001, min_difference_pct=4.0)


def test_a_lot_far_from_the_rest_drifts_with_its_evidence() -> None:
    lot = _group([8.0, 9.0, 10.0])
    model = lot + _group([0.0, 1.0, 2.0, 3.0])
    verdict = judge_lot("M", "L1", lot, model, RULE)
    assert verdict.drifting
    evidence = verdict.evidence()
    assert evidence["lot_mean_deviation_pct"] == 9.0
    assert evidence["rest_mean_deviation_pct"] == 1.5
    assert evidence["difference_pct"] == 7.5
    assert evidence["t"] == pytest.approx(8.66, abs=1e-2)
    assert evidence["lot_pumps"] == 3 and evidence["rest_pumps"] == 4
    assert evidence["lot_readings"] == 6
    low, high = evidence["ci95_pct"]  # type: ignore[misc]
    assert low < 7.5 < high
    assert "faster" in verdict.reason


def test_a_slow_lot_drifts_too() -> None:
    lot = _group([-8.0, -9.0, -10.0])
    verdict = judge_lot("M", "L1", lot, lot + _group([0.0, 1.0, 2.0, 3.0]), RULE)
    assert verdict.drifting and "slower" in verdict.reason


def test_too_few_pumps_are_not_tested() -> None:
    lot = _group([8.0, 9.0])
    verdict = judge_lot("M", "L1", lot, lot + _group([0.0, 1.0, 2.0, 3.0]), RULE)
    assert not verdict.drifting and verdict.test is None and "fewer than 3" in verdict.reason
    lot = _group([8.0, 9.0, 10.0])
    verdict = judge_lot("M", "L1", lot, lot + _group([0.0, 1.0, 2.0]), RULE)
    assert not verdict.drifting and verdict.test is None and "other pumps" in verdict.reason


def test_a_significant_but_small_difference_does_not_drift() -> None:
    lot = _group([3.0, 3.1, 2.9, 3.0])
    verdict = judge_lot("M", "L1", lot, lot + _group([0.0, 0.1, -0.1, 0.0]), RULE)
    assert verdict.test is not None and verdict.test.p_value < RULE.alpha
    assert not verdict.drifting and "< 4 %" in verdict.reason


def test_a_lot_like_the_others_does_not_drift() -> None:
    lot = _group([1.0, -1.0, 2.0])
    verdict = judge_lot("M", "L1", lot, lot + _group([0.0, 1.0, -2.0, 3.0]), RULE)
    assert not verdict.drifting and verdict.test is not None and "≥" in verdict.reason


def test_no_spread_at_all_is_not_testable() -> None:
    lot = _group([2.0, 2.0, 2.0])
    verdict = judge_lot("M", "L1", lot, lot + _group([2.0] * 4), RULE)
    assert not verdict.drifting and "not testable" in verdict.reason


# ---- simulated consortium data --------------------------------------------------------------

def test_a_lot_running_8_pct_fast_is_flagged_before_any_of_its_readings_crosses_15_pct() -> None:
    rule = LotDriftRule()
    readings = simulate_model(random.Random(11), drift_pct={0: 8.0})
    outcomes = replay(readings, rule)
    drifting = outcomes["SIM-1-L000"]
    assert drifting.flagged_at is not None
    assert drifting.max_abs_deviation_before_flag_pct < 15.0
    assert drifting.evidence["lot_mean_deviation_pct"] > 4.0  # type: ignore[operator]
    assert [lot for lot, o in outcomes.items() if o.flagged_at is not None] == ["SIM-1-L000"]
    # the same readings with the lot's bias removed: nothing flagged
    calm = replay(simulate_model(random.Random(11)), rule)
    assert all(o.flagged_at is None for o in calm.values())


def test_measured_rates_on_a_small_sample() -> None:
    # the full measurement (DOMAIN.md, Flow surveillance) runs the same functions over more lots
    flagged, lots = false_alarm_rate(seed=3, models=5, rule=LotDriftRule())
    assert lots == 100 and flagged == 0
    early, found, drifting = detection(seed=4, models=10, rule=LotDriftRule())
    assert found == drifting and early >= 8


# ---- the pump trend ------------------------------------------------------------------------

BAND = 15.0


def _points(devs: list[float], every_days: float = 14.0) -> list[tuple]:
    return [(T0 + timedelta(days=i * every_days), d) for i, d in enumerate(devs)]


def test_trend_by_hand_on_a_straight_line() -> None:
    # 2, 6, 10, 14 % every 14 days: slope 4/14 %/day, no residual, next (day 56) at 18 %
    trend = flow_trend(_points([2.0, 6.0, 10.0, 14.0]), band_pct=BAND, rule=TrendRule())
    assert trend is not None
    assert trend.slope_pct_per_day == pytest.approx(4 / 14)
    assert trend.slope_se_pct_per_day == pytest.approx(0.0, abs=1e-12)
    assert trend.predicted_deviation_pct == pytest.approx(18.0)
    assert trend.predicted_at == T0 + timedelta(days=56)
    assert trend.crossing and trend.significant


def test_trend_by_hand_with_noise() -> None:
    # x = 0, 1, 2, 3 days; y = 0, 2, 1, 3: x̄ 1.5, ȳ 1.5, Sxx 5, Sxy 4 → slope 0.8, intercept 0.3
    # residuals −0.3, 0.9, −0.9, 0.3 → SSE 1.8, s = √0.9, SE(slope) = √(0.9/5) = 0.42426
    # next at x = 4: 3.5; SE(prediction) = s·√(1 + 1/4 + 6.25/5) = 0.94868·1.58114 = 1.5
    trend = flow_trend(_points([0.0, 2.0, 1.0, 3.0], every_days=1.0), band_pct=BAND,
                       rule=TrendRule())
    assert trend is not None
    assert trend.slope_pct_per_day == pytest.approx(0.8)
    assert trend.slope_se_pct_per_day == pytest.approx(0.42426, abs=1e-5)
    assert trend.predicted_deviation_pct == pytest.approx(3.5)
    assert trend.prediction_se_pct == pytest.approx(1.5, abs=1e-5)
    # t = 0.8 / 0.42426 = 1.886 < t(2, 0.10) = 2.920: not a trend
    assert not trend.significant and not trend.crossing


def test_no_crossing_when_the_last_reading_is_already_out_or_the_prediction_inside() -> None:
    out = flow_trend(_points([8.0, 12.0, 16.0]), band_pct=BAND, rule=TrendRule())
    assert out is not None and not out.crossing  # the reading itself is abnormal already
    inside = flow_trend(_points([1.0, 2.0, 3.0]), band_pct=BAND, rule=TrendRule())
    assert inside is not None and not inside.crossing
    slowing = flow_trend(_points([-2.0, -6.0, -10.0, -14.0]), band_pct=BAND, rule=TrendRule())
    assert slowing is not None and slowing.crossing and slowing.predicted_deviation_pct < -15


def test_trend_needs_its_minimum_and_takes_the_last_window() -> None:
    assert flow_trend(_points([1.0, 2.0]), band_pct=BAND, rule=TrendRule()) is None
    same_time = [(T0, 1.0), (T0, 2.0), (T0, 3.0)]
    assert flow_trend(same_time, band_pct=BAND, rule=TrendRule()) is None
    # an old excursion outside the window does not count
    trend = flow_trend(_points([40.0, 0.0, 0.0, 0.0]), band_pct=BAND, rule=TrendRule(window=3))
    assert trend is not None and trend.readings == 3 and trend.slope_pct_per_day == 0.0
