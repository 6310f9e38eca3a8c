"""Flow surveillance arithmetic (pure functions, DOMAIN.md "Flow surveillance"): Welch's t-test of
one lot's per-pump mean flow deviations against the rest of its model's pumps, kept from running
sums so that a new reading costs O(1), and a per-pump least-squares trend that predicts the next
reading. Every figure can be checked by hand with a calculator and a t table.

The t distribution's tail is the regularized incomplete beta function, evaluated by its continued
fraction (Numerical Recipes, 3rd ed., §6.4 `betacf`, the modified Lentz method):
P(|T| > t) = I_x(df/2, 1/2) with x = df / (df + t²).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

# ---- the t distribution ----------------------------------------------------------------------

_EPS = 1e-15
_TINY = 1e-300
_MAX_ITERATIONS = 300


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_ITERATIONS + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) for a, b > 0 and 0 ≤ x ≤ 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError("x must lie in [0, 1]")
    if x in (0.0, 1.0):
        return x
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    front = math.exp(log_front)
    # the fraction converges quickly for x < (a + 1) / (a + b + 2); use the symmetry otherwise
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for Student's t with `df` degrees of freedom (df > 0, not necessarily whole)."""
    if df <= 0:
        raise ValueError("df must be positive")
    if math.isinf(t):
        return 0.0
    return min(1.0, regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t)))


def t_critical(df: float, two_sided_alpha: float) -> float:
    """The t with P(|T| ≥ t) = alpha (the t table's entry), by bisection on `t_two_sided_p`."""
    if not 0.0 < two_sided_alpha < 1.0:
        raise ValueError("alpha must lie in (0, 1)")
    low, high = 0.0, 1.0
    while t_two_sided_p(high, df) > two_sided_alpha:
        high *= 2.0
    for _ in range(200):
        mid = (low + high) / 2.0
        if t_two_sided_p(mid, df) > two_sided_alpha:
            low = mid
        else:
            high = mid
        if high - low < 1e-10:
            break
    return (low + high) / 2.0


# ---- Welch's t-test ------------------------------------------------------------------------

@dataclass(frozen=True)
class WelchResult:
    """Welch's unequal-variances t-test of mean(a) − mean(b)."""

    difference: float
    standard_error: float
    t: float
    df: float
    p_value: float

    def ci95(self) -> tuple[float, float]:
        """The 95 % confidence interval of the difference (difference ± t(df, 0.975) × SE)."""
        half = t_critical(self.df, 0.05) * self.standard_error
        return self.difference - half, self.difference + half


def welch_t_test(mean_a: float, var_a: float, n_a: int,
                 mean_b: float, var_b: float, n_b: int) -> WelchResult | None:
    """Welch's t-test from two groups' means, sample variances and sizes (None when it cannot be
    computed: fewer than 2 in a group, or both groups without any spread)."""
    if n_a < 2 or n_b < 2:
        return None
    qa, qb = max(var_a, 0.0) / n_a, max(var_b, 0.0) / n_b
    se2 = qa + qb
    if se2 <= 0.0:
        return None
    se = math.sqrt(se2)
    difference = mean_a - mean_b
    t = difference / se
    df = se2 * se2 / (qa * qa / (n_a - 1) + qb * qb / (n_b - 1))
    return WelchResult(difference=difference, standard_error=se, t=t, df=df,
                       p_value=t_two_sided_p(t, df))


# ---- running sums --------------------------------------------------------------------------

@dataclass(frozen=True)
class GroupSums:
    """The sums over a group of pumps a Welch test needs: how many pumps count (those with
    enough readings), Σ of their mean deviations (%), Σ of their squares, and their readings."""

    pumps: int = 0
    sum_mean_pct: float = 0.0
    sum_mean_sq: float = 0.0
    readings: int = 0

    def __add__(self, other: GroupSums) -> GroupSums:
        return GroupSums(self.pumps + other.pumps, self.sum_mean_pct + other.sum_mean_pct,
                         self.sum_mean_sq + other.sum_mean_sq, self.readings + other.readings)

    def __sub__(self, other: GroupSums) -> GroupSums:
        return GroupSums(self.pumps - other.pumps, self.sum_mean_pct - other.sum_mean_pct,
                         self.sum_mean_sq - other.sum_mean_sq, self.readings - other.readings)

    @property
    def mean_pct(self) -> float | None:
        """The mean of the pumps' mean deviations (None without pumps)."""
        return self.sum_mean_pct / self.pumps if self.pumps else None

    @property
    def variance(self) -> float:
        """The sample variance (n − 1) of the pumps' mean deviations (0 below two pumps)."""
        if self.pumps < 2:
            return 0.0
        return max(0.0, (self.sum_mean_sq - self.sum_mean_pct ** 2 / self.pumps) / (self.pumps - 1))


def pump_contribution(readings: int, sum_deviation_pct: float, *, min_readings: int) -> GroupSums:
    """What one pump adds to its lot's sums: its mean deviation once it has `min_readings`."""
    if readings < max(1, min_readings):
        return GroupSums()
    mean = sum_deviation_pct / readings
    return GroupSums(pumps=1, sum_mean_pct=mean, sum_mean_sq=mean * mean, readings=readings)


def reading_delta(readings: int, sum_deviation_pct: float, deviation_pct: float, *,
                  min_readings: int, sign: int = 1) -> GroupSums:
    """The change of a lot's sums when one reading of a pump (that had `readings` readings
    summing to `sum_deviation_pct`) is added (sign +1) or withdrawn (sign −1)."""
    before = pump_contribution(readings, sum_deviation_pct, min_readings=min_readings)
    after = pump_contribution(readings + sign, sum_deviation_pct + sign * deviation_pct,
                              min_readings=min_readings)
    return after - before


# ---- the lot verdict -----------------------------------------------------------------------

@dataclass(frozen=True)
class LotDriftRule:
    """When a lot is tested and when it is said to drift (defaults in DOMAIN.md)."""

    min_pumps: int = 5  # pumps of the lot with enough readings
    min_rest_pumps: int = 5  # the model's other pumps with enough readings
    min_readings_per_pump: int = 1
    alpha: float = 0.001  # two-sided, per test
    min_difference_pct: float = 4.0  # a smaller difference is not clinically relevant


@dataclass(frozen=True)
class LotVerdict:
    """A lot compared with the rest of its model's pumps."""

    model_code: str
    lot_number: str
    lot: GroupSums
    rest: GroupSums
    test: WelchResult | None
    drifting: bool
    reason: str  # why it drifts, or why it was not tested / does not drift

    def evidence(self) -> dict[str, object]:
        """The figures a biomedical engineer checks by hand (the alert's details)."""
        test = self.test
        return {
            "model_code": self.model_code, "lot_number": self.lot_number,
            "test": "welch_t_two_sided",
            "lot_pumps": self.lot.pumps, "lot_readings": self.lot.readings,
            "lot_mean_deviation_pct": _r(self.lot.mean_pct),
            "lot_sd_pct": _r(math.sqrt(self.lot.variance)),
            "rest_pumps": self.rest.pumps, "rest_readings": self.rest.readings,
            "rest_mean_deviation_pct": _r(self.rest.mean_pct),
            "rest_sd_pct": _r(math.sqrt(self.rest.variance)),
            "difference_pct": _r(test.difference) if test else None,
            "ci95_pct": [_r(v) for v in test.ci95()] if test else None,
            "t": _r(test.t) if test else None, "df": _r(test.df) if test else None,
            "p_value": float(f"{test.p_value:.3g}") if test else None,
            "reason": self.reason,
        }


def judge_lot(model_code: str, lot_number: str, lot: GroupSums, model: GroupSums,
              rule: LotDriftRule) -> LotVerdict:
    """Welch's t-test of the lot's per-pump mean deviations against the model's other pumps;
    the lot drifts when p < alpha and the difference is at least `min_difference_pct`."""
    rest = model - lot

    def verdict(test: WelchResult | None, drifting: bool, reason: str) -> LotVerdict:
        return LotVerdict(model_code, lot_number, lot, rest, test, drifting, reason)

    if lot.pumps < rule.min_pumps:
        return verdict(None, False, f"{lot.pumps} pumps with ≥ {rule.min_readings_per_pump} "
                                    f"readings, fewer than {rule.min_pumps}")
    if rest.pumps < rule.min_rest_pumps:
        return verdict(None, False, f"{rest.pumps} other pumps of the model, fewer than "
                                    f"{rule.min_rest_pumps}")
    lot_mean, rest_mean = lot.mean_pct, rest.mean_pct
    assert lot_mean is not None and rest_mean is not None
    test = welch_t_test(lot_mean, lot.variance, lot.pumps, rest_mean, rest.variance, rest.pumps)
    if test is None:
        return verdict(None, False, "no spread in either group: not testable")
    if test.p_value >= rule.alpha:
        return verdict(test, False, f"p = {test.p_value:.3g} ≥ {rule.alpha:g}")
    if abs(test.difference) < rule.min_difference_pct:
        return verdict(test, False, f"|difference| {abs(test.difference):.2f} % < "
                                    f"{rule.min_difference_pct:g} %")
    direction = "faster" if test.difference > 0 else "slower"
    return verdict(test, True, f"lot runs {abs(test.difference):.1f} % {direction} than the "
                               f"model's other pumps (p = {test.p_value:.3g} < {rule.alpha:g})")


# ---- the per-pump trend --------------------------------------------------------------------

@dataclass(frozen=True)
class FlowTrend:
    """A least-squares line through a pump's last deviations (% per day), and the next reading
    it predicts; `crossing` when the prediction leaves the band while the last reading is in it."""

    readings: int
    slope_pct_per_day: float
    slope_se_pct_per_day: float
    last_at: datetime
    last_deviation_pct: float
    predicted_at: datetime
    predicted_deviation_pct: float
    prediction_se_pct: float
    band_pct: float
    significant: bool
    crossing: bool


@dataclass(frozen=True)
class TrendRule:
    """How many readings the trend takes and how sure its slope must be (DOMAIN.md)."""

    window: int = 6  # the last readings the line goes through
    min_readings: int = 3
    alpha: float = 0.10  # two-sided, for the slope to count as a trend


def flow_trend(points: list[tuple[datetime, float]], *, band_pct: float,
               rule: TrendRule) -> FlowTrend | None:
    """The trend of the last readings (time, deviation %), oldest first; the next reading is
    predicted one mean interval of those readings after the last. None below `min_readings`
    or when the readings share one time."""
    pts = points[-rule.window:]
    n = len(pts)
    if n < max(3, rule.min_readings):
        return None
    t0 = pts[0][0]
    xs = [(at - t0).total_seconds() / 86_400.0 for at, _ in pts]
    ys = [dev for _, dev in pts]
    x_mean, y_mean = sum(xs) / n, sum(ys) / n
    sxx = sum((x - x_mean) ** 2 for x in xs)
    if sxx <= 0.0:
        return None
    slope = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = y_mean - slope * x_mean
    sse = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    s = math.sqrt(sse / (n - 2))
    slope_se = s / math.sqrt(sxx)
    step_days = (xs[-1] - xs[0]) / (n - 1)
    x_next = xs[-1] + step_days
    predicted = intercept + slope * x_next
    prediction_se = s * math.sqrt(1.0 + 1.0 / n + (x_next - x_mean) ** 2 / sxx)
    if slope_se == 0.0:
        significant = slope != 0.0
    else:
        significant = abs(slope / slope_se) >= t_critical(n - 2, rule.alpha)
    last = ys[-1]
    crossing = significant and abs(predicted) > band_pct and abs(last) <= band_pct
    return FlowTrend(readings=n, slope_pct_per_day=slope, slope_se_pct_per_day=slope_se,
                     last_at=pts[-1][0], last_deviation_pct=last,
                     predicted_at=pts[-1][0] + timedelta(days=step_days),
                     predicted_deviation_pct=predicted, prediction_se_pct=prediction_se,
                     band_pct=band_pct, significant=significant, crossing=crossing)


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)
