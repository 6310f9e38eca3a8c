"""Refill arithmetic of DOMAIN.md (pure functions): measured flow, deviation, projected empty time,
the regimen's fill sequence, the appointment window, the next due time, and the checks for
impossible numbers, fills too close together and chemo without its delivery."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from shared.contracts.vocabulary import (
    ADMINISTRABLE_DELIVERY_STATUSES,
    DueBasis,
    FillType,
    Regimen,
)

SECONDS_PER_DAY = 86_400.0


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


def first_fill_type(regimen: str) -> FillType:
    """The first fill of a regimen: chemo for FUDR alternating, saline for maintenance."""
    return FillType.CHEMO if regimen == Regimen.FUDR_ALTERNATING else FillType.SALINE


def next_fill_type(regimen: str, performed_fill_type: str) -> FillType:
    """The fill after the one just performed: chemo ↔ saline for FUDR alternating, else saline."""
    if regimen != Regimen.FUDR_ALTERNATING:
        return FillType.SALINE
    return FillType.SALINE if performed_fill_type == FillType.CHEMO else FillType.CHEMO


def start_of_day_utc(day: date) -> datetime:
    """00:00 UTC of a date (a therapy's first appointment is due then)."""
    return datetime.combine(day, time(0, 0), tzinfo=UTC)


def is_outside_window(performed_at: datetime, due_at: datetime, window_days: float) -> bool:
    """True when the refill happened more than `window_days` before or after the due time."""
    return abs((performed_at - due_at).total_seconds()) > window_days * SECONDS_PER_DAY


def next_due(*, performed_at: datetime, interval_days: float, projected_empty_at: datetime | None,
             near_empty_hours: float) -> tuple[datetime, DueBasis]:
    """When the next refill is due, and which rule set it: the earlier of `performed_at +
    interval` and `projected_empty_at − near-empty margin` (DOMAIN.md, Safety rules), never
    before performed_at; the interval wins a tie."""
    by_interval = performed_at + timedelta(days=interval_days)
    if projected_empty_at is None:
        return by_interval, DueBasis.INTERVAL
    before_empty = projected_empty_at - timedelta(hours=near_empty_hours)
    if before_empty >= by_interval:
        return by_interval, DueBasis.INTERVAL
    # a pump that runs dry within the margin is due at once, not in the past
    return max(before_empty, performed_at), DueBasis.PROJECTED_EMPTY


@dataclass(frozen=True)
class PreviousFill:
    performed_at: datetime
    fill_volume_ml: float
    refill_id: str | None = None


def refill_problems(
    *,
    now: datetime,
    performed_at: datetime,
    residual_volume_ml: float,
    fill_volume_ml: float,
    reservoir_ml: float,
    previous: PreviousFill | None,
    implanted_at: datetime | None,
    min_interval_hours: float,
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
        elif performed_at - previous.performed_at < timedelta(hours=min_interval_hours):
            problems.append(("performed_at", too_soon_message(performed_at, previous,
                                                               min_interval_hours)))
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


def too_soon_message(performed_at: datetime, previous: PreviousFill,
                     min_interval_hours: float) -> str:
    """Why a fill too soon after the previous one is refused, and how to correct the record."""
    hours = (performed_at - previous.performed_at).total_seconds() / 3600.0
    path = f"/v1/refills/{previous.refill_id or '{id}'}/entered-in-error"
    return (f"is {hours:.1f} h after the previous fill of this pump "
            f"({previous.performed_at.isoformat()}); fills of one pump must be at least "
            f"{min_interval_hours:g} h apart; if the previous refill was recorded in error, "
            f"mark it entered-in-error (POST {path}) first")


@dataclass(frozen=True)
class DeliveryFacts:
    """What a chemo fill needs to know of the delivery order it names."""

    id: str
    appointment_id: str
    patient_mrn: str
    status: str
    beyond_use_at: datetime | None


def chemo_delivery_problem(*, delivery_id: str | None, delivery: DeliveryFacts | None,
                           appointment_id: str | None, patient_mrn: str,
                           performed_at: datetime, now: datetime) -> str | None:
    """Why a chemo fill may not be recorded against this delivery (None when it may): it must
    name this patient's delivery for the appointment it completes, `dispatched` or `delivered`,
    not past its beyond-use time at the fill nor now (DOMAIN.md, Safety rules)."""
    if not delivery_id:
        return ("a chemo fill needs the delivery order id printed on the bag's label "
                "(scan it); none was given")
    if delivery is None:
        return f"no delivery order {delivery_id}; scan the order id on the bag's label"
    if delivery.patient_mrn != patient_mrn or appointment_id is None \
            or delivery.appointment_id != appointment_id:
        return (f"delivery order {delivery_id} is not the one ordered for this patient's "
                "appointment; check the bag belongs to this patient")
    if delivery.status not in ADMINISTRABLE_DELIVERY_STATUSES:
        return (f"delivery order {delivery_id} is {delivery.status}: the pharmacy has not "
                "dispatched it yet, so the bag cannot be in hand")
    if delivery.beyond_use_at is not None:
        if performed_at > delivery.beyond_use_at:
            return (f"delivery order {delivery_id} was past its beyond-use time "
                    f"({delivery.beyond_use_at.isoformat()}) at the fill; do not use it")
        if now > delivery.beyond_use_at:
            return (f"delivery order {delivery_id} is past its beyond-use time "
                    f"({delivery.beyond_use_at.isoformat()}); do not use it")
    return None


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


@dataclass(frozen=True)
class RefillOutcome:
    """What a possible refill sets: its flow figures, whether it was outside its appointment's
    window, and the type and due time of the next fill."""

    figures: FlowFigures
    outside_window: bool
    next_fill_type: FillType
    next_due_at: datetime
    next_due_basis: DueBasis


def refill_outcome(*, performed_at: datetime, residual_volume_ml: float, fill_volume_ml: float,
                   fill_type: str, labeled_flow_ml_per_day: float, previous: PreviousFill | None,
                   appointment_due_at: datetime | None, regimen: str, refill_interval_days: float,
                   window_days: float, near_empty_hours: float) -> RefillOutcome:
    """The figures of a refill `refill_problems` found possible, and the next fill it sets."""
    figures = refill_figures(performed_at=performed_at, residual_volume_ml=residual_volume_ml,
                             fill_volume_ml=fill_volume_ml,
                             labeled_flow_ml_per_day=labeled_flow_ml_per_day, previous=previous)
    outside = appointment_due_at is not None and is_outside_window(performed_at, appointment_due_at,
                                                                   window_days)
    due_at, due_basis = next_due(performed_at=performed_at, interval_days=refill_interval_days,
                                 projected_empty_at=figures.projected_empty_at,
                                 near_empty_hours=near_empty_hours)
    return RefillOutcome(figures=figures, outside_window=outside,
                         next_fill_type=next_fill_type(regimen, fill_type),
                         next_due_at=due_at, next_due_basis=due_basis)
