"""The alert rules: pure functions from an event's payload to the alerts it raises or clears."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.contracts.inventory import PumpExplantedData, RecallIssuedData
from shared.contracts.scheduling import (
    AppointmentData,
    DeliveryData,
    FlowRecordedData,
    FlowTrendData,
    LotFlowDriftData,
    OrderRefusedData,
    RefillCompletedData,
    RefillOverdueData,
    RefillVoidedData,
    ReservoirNearEmptyData,
)
from shared.contracts.vocabulary import AlertKind, DeliveryStatus, Severity

# a completed refill resolves these alerts of its pump
REFILL_KINDS = (AlertKind.REFILL_DUE_SOON, AlertKind.REFILL_OVERDUE, AlertKind.RESERVOIR_NEAR_EMPTY)

SYSTEM_STALE_KEY = f"{AlertKind.SYSTEM_STALE}:scheduling"


@dataclass(frozen=True)
class AlertFact:
    """An alert a rule wants raised (or repeated, when one with its dedup_key is open)."""

    kind: AlertKind
    severity: Severity
    dedup_key: str
    summary: str
    patient_mrn: str | None = None
    pump_serial: str | None = None
    center: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClearFact:
    """Open alerts a condition that went away resolves: by dedup key, by pump and kinds, or
    (`refill_id`, with pump and kinds) the alerts that one refill's reading raised."""

    resolution: str
    dedup_key: str | None = None
    pump_serial: str | None = None
    kinds: tuple[AlertKind, ...] = ()
    refill_id: str | None = None


@dataclass(frozen=True)
class RuleResult:
    """What one event means for the alerts."""

    raise_: tuple[AlertFact, ...] = ()
    clear: tuple[ClearFact, ...] = ()


def max_severity(a: Severity | str, b: Severity | str) -> Severity:
    """The higher of two severities."""
    a, b = Severity(a), Severity(b)
    return a if a.rank >= b.rank else b


def refill_due_soon(data: AppointmentData) -> RuleResult:
    """A refill due soon: info."""
    return RuleResult(raise_=(AlertFact(
        kind=AlertKind.REFILL_DUE_SOON, severity=Severity.INFO,
        dedup_key=f"{AlertKind.REFILL_DUE_SOON}:{data.id}",
        summary=f"{data.fill_type} refill of pump {data.pump_serial} due {_iso(data.due_at)}",
        patient_mrn=data.patient_mrn, pump_serial=data.pump_serial, center=data.center,
        details={"appointment_id": data.id, "due_at": _iso(data.due_at),
                 "fill_type": data.fill_type},
    ),))


def refill_overdue(data: RefillOverdueData, *, critical_hours_to_empty: float) -> RuleResult:
    """An overdue refill: warning, critical when the pump runs dry within the threshold."""
    hours = data.hours_to_empty
    critical = hours is not None and hours < critical_hours_to_empty
    empty = f", empty in {hours:.0f} h" if hours is not None else ""
    return RuleResult(raise_=(AlertFact(
        kind=AlertKind.REFILL_OVERDUE, severity=Severity.CRITICAL if critical else Severity.WARNING,
        dedup_key=f"{AlertKind.REFILL_OVERDUE}:{data.id}",
        summary=f"refill of pump {data.pump_serial} overdue by {data.overdue_hours:.0f} h{empty}",
        patient_mrn=data.patient_mrn, pump_serial=data.pump_serial, center=data.center,
        details={"appointment_id": data.id, "due_at": _iso(data.due_at),
                 "overdue_hours": data.overdue_hours, "hours_to_empty": hours},
    ),))


def reservoir_near_empty(data: ReservoirNearEmptyData) -> RuleResult:
    """A pump projected to run dry soon: critical."""
    hours = data.hours_to_empty
    return RuleResult(raise_=(AlertFact(
        kind=AlertKind.RESERVOIR_NEAR_EMPTY, severity=Severity.CRITICAL,
        dedup_key=f"{AlertKind.RESERVOIR_NEAR_EMPTY}:{data.id}",
        summary=f"pump {data.pump_serial} projected empty in {hours:.0f} h",
        patient_mrn=data.patient_mrn, pump_serial=data.pump_serial, center=data.center,
        details={"appointment_id": data.id, "hours_to_empty": hours,
                 "projected_empty_at": _iso(data.projected_empty_at)},
    ),))


def flow_abnormal(data: FlowRecordedData, *, warning_pct: float, critical_pct: float) -> RuleResult:
    """A measured flow off the labeled rate: warning above `warning_pct`, critical above `critical_pct`.

    A reading back within limits does not resolve an open flow alert: an abnormal reading needs a
    clinician's look (dose, pump replacement), so a person resolves it.
    """
    deviation_pct = data.flow_deviation_pct
    if abs(deviation_pct) > critical_pct:
        severity = Severity.CRITICAL
    elif abs(deviation_pct) > warning_pct:
        severity = Severity.WARNING
    else:
        return RuleResult()
    direction = "fast" if deviation_pct > 0 else "slow"
    return RuleResult(raise_=(AlertFact(
        kind=AlertKind.FLOW_ABNORMAL, severity=severity,
        dedup_key=f"{AlertKind.FLOW_ABNORMAL}:{data.pump_serial}",
        summary=(f"pump {data.pump_serial} flow {direction}: {data.measured_flow_ml_per_day:.2f} "
                 f"mL/day vs {data.expected_flow_ml_per_day:.2f} labeled ({deviation_pct:+.1f} %)"),
        patient_mrn=data.patient_mrn, pump_serial=data.pump_serial, center=data.center,
        # refill_ids: every reading that raised or repeated the alert, so that a reading
        # entered in error later withdraws only its own part (a repeat replaces refill_id)
        details={"refill_id": data.refill_id, "refill_ids": [data.refill_id],
                 "flow_deviation_pct": deviation_pct,
                 "measured_flow_ml_per_day": data.measured_flow_ml_per_day,
                 "expected_flow_ml_per_day": data.expected_flow_ml_per_day,
                 "elapsed_days": data.elapsed_days},
    ),))


def lot_flow_drift(data: LotFlowDriftData) -> RuleResult:
    """A lot whose pumps drift from the rest of the model: a warning for biomed, one open alert
    per model and lot, its evidence updated as readings come (a person resolves it: a recall, or
    a look that finds another cause). It belongs to no centre: the lot spans them."""
    direction = "fast" if data.difference_pct > 0 else "slow"
    low, high = data.ci95_pct
    return RuleResult(raise_=(AlertFact(
        kind=AlertKind.LOT_FLOW_DRIFT, severity=Severity.WARNING,
        dedup_key=f"{AlertKind.LOT_FLOW_DRIFT}:{data.model_code}:{data.lot_number}",
        summary=(f"lot {data.lot_number} of {data.model_code} runs {direction}: "
                 f"{data.lot_mean_deviation_pct:+.1f} % over {data.lot_pumps} pumps vs "
                 f"{data.rest_mean_deviation_pct:+.1f} % for the model's other pumps "
                 f"(difference {data.difference_pct:+.1f} %, 95 % CI {low:+.1f} to {high:+.1f}; "
                 f"Welch t = {data.t:.2f}, df = {data.df:.1f}, p = {data.p_value:.2g})"),
        details={**data.model_dump(mode="json"), "audience": "biomed"},
    ),))


def flow_trend(data: FlowTrendData) -> RuleResult:
    """A pump's trend predicting its next reading off the band while its last is inside: a
    warning; a trend that no longer does resolves it."""
    key = f"{AlertKind.FLOW_TREND}:{data.pump_serial}"
    if not data.crossing:
        return RuleResult(clear=(ClearFact(
            resolution=f"trend back: next reading predicted {data.predicted_deviation_pct:+.1f} % "
                       f"(refill {data.refill_id})", dedup_key=key),))
    return RuleResult(raise_=(AlertFact(
        kind=AlertKind.FLOW_TREND, severity=Severity.WARNING, dedup_key=key,
        summary=(f"pump {data.pump_serial} flow trending to {data.predicted_deviation_pct:+.1f} % "
                 f"by {_iso(data.predicted_at)} (band ±{data.band_pct:g} %; last reading "
                 f"{data.last_deviation_pct:+.1f} %, slope {data.slope_pct_per_day:+.2f} ± "
                 f"{data.slope_se_pct_per_day:.2f} %/day over {data.readings} readings)"),
        patient_mrn=data.patient_mrn, pump_serial=data.pump_serial, center=data.center,
        details=data.model_dump(mode="json"),
    ),))


def refill_completed(data: RefillCompletedData) -> RuleResult:
    """A completed refill resolves its pump's due-soon, overdue and near-empty alerts."""
    return RuleResult(clear=(ClearFact(
        resolution=f"refill {data.id} completed at {_iso(data.performed_at)}",
        pump_serial=data.pump_serial, kinds=REFILL_KINDS,
    ),))


def refill_voided(data: RefillVoidedData) -> RuleResult:
    """A refill entered in error withdraws the flow alert its reading raised (resolved with the
    reason when no other reading backs it), and the alerts of the appointment it created."""
    resolution = f"refill {data.refill_id} entered in error by {data.voided_by}: {data.reason}"
    clears = [ClearFact(resolution=resolution, pump_serial=data.pump_serial,
                        kinds=(AlertKind.FLOW_ABNORMAL,), refill_id=data.refill_id)]
    if data.cancelled_appointment_id:
        clears.extend(ClearFact(resolution=resolution, dedup_key=f"{kind}:{data.cancelled_appointment_id}")
                      for kind in REFILL_KINDS)
    return RuleResult(clear=tuple(clears))


def order_refused(data: OrderRefusedData) -> RuleResult:
    """A chemo fill whose pharmacy order was refused (a hard dose limit, a dose that cannot be
    computed): critical, for the oncologist to correct the therapy before the fill is due."""
    return RuleResult(raise_=(AlertFact(
        kind=AlertKind.ORDER_REFUSED, severity=Severity.CRITICAL,
        dedup_key=f"{AlertKind.ORDER_REFUSED}:{data.appointment_id}",
        summary=f"no pharmacy order sent for the {data.fill_type} fill of pump {data.pump_serial} "
                f"due {_iso(data.due_at)}: {data.reason}",
        patient_mrn=data.patient_mrn, pump_serial=data.pump_serial, center=data.center,
        details={"appointment_id": data.appointment_id, "therapy_id": data.therapy_id,
                 "field": data.field, "reason": data.reason, "due_at": _iso(data.due_at)},
    ),))


def delivery_late(data: DeliveryData) -> RuleResult:
    """A drug delivery not delivered in time: warning."""
    return RuleResult(raise_=(AlertFact(
        kind=AlertKind.DELIVERY_LATE, severity=Severity.WARNING,
        dedup_key=f"{AlertKind.DELIVERY_LATE}:{data.id}",
        summary=f"delivery {data.id} for pump {data.pump_serial} late (needed by "
                f"{_iso(data.needed_by)}, status {data.status})",
        patient_mrn=data.patient_mrn, pump_serial=data.pump_serial, center=data.center,
        details={"delivery_id": data.id, "appointment_id": data.appointment_id,
                 "needed_by": _iso(data.needed_by), "status": data.status},
    ),))


def delivery_updated(data: DeliveryData) -> RuleResult:
    """A rejected order is critical; a delivered (or cancelled) one resolves its late alert."""
    if data.status == DeliveryStatus.REJECTED:
        reason = next((h.reason for h in reversed(data.history)
                       if h.status == DeliveryStatus.REJECTED), None)
        return RuleResult(raise_=(AlertFact(
            kind=AlertKind.DELIVERY_REJECTED, severity=Severity.CRITICAL,
            dedup_key=f"{AlertKind.DELIVERY_REJECTED}:{data.id}",
            summary=f"pharmacy rejected delivery {data.id} for pump {data.pump_serial}"
                    + (f": {reason}" if reason else ""),
            patient_mrn=data.patient_mrn, pump_serial=data.pump_serial, center=data.center,
            details={"delivery_id": data.id, "appointment_id": data.appointment_id,
                     "needed_by": _iso(data.needed_by), "reason": reason},
        ),))
    if data.status in (DeliveryStatus.DELIVERED, DeliveryStatus.CANCELLED):
        return RuleResult(clear=(ClearFact(
            resolution=f"delivery {data.id} {data.status}",
            dedup_key=f"{AlertKind.DELIVERY_LATE}:{data.id}",
        ),))
    if data.status == DeliveryStatus.REQUESTED:
        # the order of an appointment once refused went out after all (the therapy corrected)
        return RuleResult(clear=(ClearFact(
            resolution=f"order {data.id} sent to the pharmacy",
            dedup_key=f"{AlertKind.ORDER_REFUSED}:{data.appointment_id}",
        ),))
    return RuleResult()


def recall_issued(data: RecallIssuedData) -> RuleResult:
    """One critical alert per implanted pump of a recall."""
    return RuleResult(raise_=tuple(
        AlertFact(
            kind=AlertKind.DEVICE_RECALLED_IMPLANTED, severity=Severity.CRITICAL,
            dedup_key=f"{AlertKind.DEVICE_RECALLED_IMPLANTED}:{data.recall_id}:{implant.serial_number}",
            summary=f"implanted pump {implant.serial_number} recalled ({data.model_code}): "
                    f"{data.reason}",
            patient_mrn=implant.patient_mrn, pump_serial=implant.serial_number,
            center=implant.center,
            details={"recall_id": data.recall_id, "model_code": data.model_code,
                     "lot_numbers": list(data.lot_numbers), "reason": data.reason},
        )
        for implant in data.implanted
    ))


def pump_explanted(data: PumpExplantedData) -> RuleResult:
    """An explanted pump needs no more refills nor recall follow-up: resolve those alerts."""
    return RuleResult(clear=(ClearFact(
        resolution=f"pump explanted at {_iso(data.explanted_at)}: {data.reason}",
        pump_serial=data.serial_number, kinds=(*REFILL_KINDS, AlertKind.DEVICE_RECALLED_IMPLANTED),
    ),))


def is_stale(*, last_heard_at: datetime, now: datetime, sweep_interval_seconds: float,
             stale_after_intervals: int) -> bool:
    """True when the heartbeat has been silent for more than the allowed number of sweeps."""
    return (now - last_heard_at).total_seconds() > sweep_interval_seconds * stale_after_intervals


def system_stale(*, last_heard_at: datetime, now: datetime) -> AlertFact:
    """The watchdog's alert: scheduling's sweeps have stopped being heard."""
    silent_minutes = (now - last_heard_at).total_seconds() / 60
    return AlertFact(
        kind=AlertKind.SYSTEM_STALE, severity=Severity.CRITICAL, dedup_key=SYSTEM_STALE_KEY,
        summary=f"no scheduling sweep heard for {silent_minutes:.0f} min: due, overdue and "
                "near-empty checks may not be running",
        details={"last_heard_at": _iso(last_heard_at)},
    )


def heartbeat_heard(at: datetime) -> RuleResult:
    """A heartbeat heard again resolves the watchdog's alert."""
    return RuleResult(clear=(ClearFact(
        resolution=f"scheduling sweep heard again at {_iso(at)}", dedup_key=SYSTEM_STALE_KEY,
    ),))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


# ---- therapy pauses ------------------------------------------------------------------------

# what a paused therapy holds (DOMAIN.md, Therapy pauses): the warnings that bear on the next
# chemo fill, which the pause put off on purpose, and that are acted on when it resumes: a flow
# off its band or trending off it (the next fill's volume and dose), a late drug delivery. Not
# the refills: the paused pump keeps infusing and must still be refilled (saline) on time
PAUSE_HELD_KINDS = frozenset({AlertKind.FLOW_ABNORMAL, AlertKind.FLOW_TREND,
                              AlertKind.DELIVERY_LATE})


def pause_holds(*, kind: str, severity: str) -> bool:
    """Whether a paused therapy holds back the page of an alert of its pump: a warning of one of
    `PAUSE_HELD_KINDS`, never a critical. The implanted pump keeps pumping while its therapy is
    paused: a reservoir running dry, an overdue refill, a critical flow, a recalled device put the
    patient at risk whatever the plan, and page at once."""
    return severity == Severity.WARNING and kind in PAUSE_HELD_KINDS
