"""Refill arithmetic of DOMAIN.md (pure functions): measured flow, deviation, projected empty time,
the regimen's fill sequence, the appointment window and the checks for impossible numbers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

SECONDS_PER_DAY = 86_400.0
REGIMENS = ("fudr_alternating", "saline_maintenance")
FILL_TYPES = ("chemo", "saline")


def elapsed_days_between(previous_at: datetime, performed_at: datetime) -> float:
    """Days (fractional) from the previous fill to this one."""
    return (performed_at - previous_at).total_seconds() / SECONDS_PER_DAY


def measured_flow_ml_per_day(previous_fill_volume_ml: float, residual_volume_ml: float,
                             elapsed_days: float) -> float:
    """(volume left in the pump at the previous fill − residual withdrawn now) / days elapsed."""
    if elapsed_days <= 0:
        raise ValueError("elapsed_days must be positive")
    return (previous_fill_volume_ml - residual_volume_ml) / elapsed_days


def flow_deviation_pct(measured_ml_per_day: float, expected_ml_per_day: float) -> float:
    """(measured − expected) / expected × 100."""
    if expected_ml_per_day <= 0:
        raise ValueError("expected flow must be positive")
    return (measured_ml_per_day - expected_ml_per_day) / expected_ml_per_day * 100.0


def projected_empty_at(filled_at: datetime, fill_volume_ml: float,
                       flow_ml_per_day: float | None) -> datetime | None:
    """When the pump runs dry: time of fill + volume / flow (None when nothing flows)."""
    if flow_ml_per_day is None or flow_ml_per_day <= 0:
        return None
    return filled_at + timedelta(days=fill_volume_ml / flow_ml_per_day)


def hours_until(now: datetime, when: datetime | None) -> float | None:
    """Hours from now until `when` (negative when past), None when unknown."""
    if when is None:
        return None
    return round((when - now).total_seconds() / 3600.0, 2)


def first_fill_type(regimen: str) -> str:
    """The first fill of a regimen: chemo for FUDR alternating, saline for maintenance."""
    return "chemo" if regimen == "fudr_alternating" else "saline"


def next_fill_type(regimen: str, performed_fill_type: str) -> str:
    """The fill after the one just performed: chemo ↔ saline for FUDR alternating, else saline."""
    if regimen != "fudr_alternating":
        return "saline"
    return "saline" if performed_fill_type == "chemo" else "chemo"


def start_of_day_utc(day: date) -> datetime:
    """00:00 UTC of a date (a therapy's first appointment is due then)."""
    return datetime.combine(day, time(0, 0), tzinfo=UTC)


def is_outside_window(performed_at: datetime, due_at: datetime, window_days: float) -> bool:
    """True when the refill happened more than `window_days` before or after the due time."""
    return abs((performed_at - due_at).total_seconds()) > window_days * SECONDS_PER_DAY


@dataclass(frozen=True)
class PreviousFill:
    performed_at: datetime
    fill_volume_ml: float


def refill_problems(
    *,
    now: datetime,
    performed_at: datetime,
    residual_volume_ml: float,
    fill_volume_ml: float,
    reservoir_ml: float,
    previous: PreviousFill | None,
    implanted_at: datetime | None,
) -> list[tuple[str, str]]:
    """Each impossible number of a refill as (field, message); empty when the refill is possible."""
    problems: list[tuple[str, str]] = []
    if residual_volume_ml < 0:
        problems.append(("residual_volume_ml", "must not be negative"))
    if fill_volume_ml <= 0:
        problems.append(("fill_volume_ml", "must be positive"))
    if fill_volume_ml > reservoir_ml:
        problems.append(("fill_volume_ml", f"{fill_volume_ml} mL is above the reservoir "
                                           f"of {reservoir_ml} mL"))
    if performed_at > now:
        problems.append(("performed_at", "lies in the future"))
    if previous is not None:
        if performed_at <= previous.performed_at:
            problems.append(("performed_at", "is not after the previous fill "
                                             f"({previous.performed_at.isoformat()})"))
        if residual_volume_ml > previous.fill_volume_ml:
            problems.append(("residual_volume_ml", f"{residual_volume_ml} mL is above the "
                                                   f"{previous.fill_volume_ml} mL left at the "
                                                   "previous fill"))
    else:
        if residual_volume_ml > reservoir_ml:
            problems.append(("residual_volume_ml", f"{residual_volume_ml} mL is above the "
                                                   f"reservoir of {reservoir_ml} mL"))
        if implanted_at is not None and performed_at < implanted_at:
            problems.append(("performed_at", "is before the pump was implanted"))
    return problems


@dataclass(frozen=True)
class FlowFigures:
    """What one refill tells about the pump's flow."""

    elapsed_days: float | None
    measured_flow_ml_per_day: float | None
    expected_flow_ml_per_day: float
    flow_deviation_pct: float | None
    projected_empty_at: datetime | None


def refill_figures(*, performed_at: datetime, residual_volume_ml: float, fill_volume_ml: float,
                   labeled_flow_ml_per_day: float, previous: PreviousFill | None) -> FlowFigures:
    """Measured flow, deviation from the unit's labeled rate and projected empty time of a refill."""
    if previous is None:
        return FlowFigures(None, None, labeled_flow_ml_per_day, None,
                           projected_empty_at(performed_at, fill_volume_ml, labeled_flow_ml_per_day))
    days = elapsed_days_between(previous.performed_at, performed_at)
    measured = measured_flow_ml_per_day(previous.fill_volume_ml, residual_volume_ml, days)
    deviation = flow_deviation_pct(measured, labeled_flow_ml_per_day)
    return FlowFigures(
        elapsed_days=round(days, 4),
        measured_flow_ml_per_day=round(measured, 4),
        expected_flow_ml_per_day=labeled_flow_ml_per_day,
        flow_deviation_pct=round(deviation, 2),
        projected_empty_at=projected_empty_at(performed_at, fill_volume_ml, measured),
    )
