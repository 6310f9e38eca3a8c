"""Every alert rule's whole result, field by field: the kind, severity, dedup key, summary and
details a page and the dashboard show (`make mutation` found rules whose text, keys or
details no test looked at)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.alerts import rules
from services.alerts.rules import AlertFact, ClearFact, RuleResult
from shared.contracts.inventory import PumpExplantedData, RecallIssuedData
from shared.contracts.scheduling import (
    AppointmentData,
    DeliveryData,
    FlowRecordedData,
    OrderRefusedData,
    RefillCompletedData,
    RefillOverdueData,
    RefillVoidedData,
    ReservoirNearEmptyData,
)
from tests.factories import T0

T0_ISO = "2026-11-02T08:00:00Z"  # T0 as the rules write it
APPT = {"id": "a1", "therapy_id": "t1", "patient_mrn": "MRN-1", "center": "north",
        "pump_serial": "SN1", "fill_type": "chemo", "due_at": "2026-11-28T00:00:00Z",
        "status": "scheduled"}

WHO = {"patient_mrn": "MRN-1", "pump_serial": "SN1", "center": "north"}
DELIVERY = {"id": "o1", "appointment_id": "a1", **WHO, "needed_by": "2026-11-28T06:30:00Z",
            "status": "requested"}


def test_due_soon_whole_fact() -> None:
    assert rules.refill_due_soon(AppointmentData.model_validate(APPT)) == RuleResult(raise_=(AlertFact(
        kind="refill_due_soon", severity="info", dedup_key="refill_due_soon:a1",
        summary="chemo refill of pump SN1 due 2026-11-28T00:00:00Z", **WHO,
        details={"appointment_id": "a1", "due_at": "2026-11-28T00:00:00Z", "fill_type": "chemo"}),))


@pytest.mark.parametrize(("hours_to_empty", "severity", "empty"),
                         [(None, "warning", ""), (71.6, "critical", ", empty in 72 h")])
def test_overdue_whole_fact(hours_to_empty: float | None, severity: str, empty: str) -> None:
    data = RefillOverdueData.model_validate({**APPT, "overdue_hours": 30.4, "hours_to_empty": hours_to_empty})
    assert rules.refill_overdue(data, critical_hours_to_empty=72) == RuleResult(raise_=(AlertFact(
        kind="refill_overdue", severity=severity, dedup_key="refill_overdue:a1",
        summary=f"refill of pump SN1 overdue by 30 h{empty}", **WHO,
        details={"appointment_id": "a1", "due_at": "2026-11-28T00:00:00Z", "overdue_hours": 30.4,
                 "hours_to_empty": hours_to_empty}),))


def test_near_empty_whole_fact() -> None:
    data = ReservoirNearEmptyData.model_validate({**APPT, "hours_to_empty": 40.4,
                                                  "projected_empty_at": "2026-11-29T10:00:00Z"})
    assert rules.reservoir_near_empty(data) == RuleResult(raise_=(AlertFact(
        kind="reservoir_near_empty", severity="critical", dedup_key="reservoir_near_empty:a1",
        summary="pump SN1 projected empty in 40 h", **WHO,
        details={"appointment_id": "a1", "hours_to_empty": 40.4,
                 "projected_empty_at": "2026-11-29T10:00:00Z"}),))


def test_near_empty_without_its_hours_to_empty_is_refused_by_the_contract() -> None:
    with pytest.raises(ValidationError, match="hours_to_empty"):
        ReservoirNearEmptyData.model_validate(APPT)


def _flow(deviation_pct: float, measured: float) -> FlowRecordedData:
    return FlowRecordedData(**WHO, measured_flow_ml_per_day=measured, expected_flow_ml_per_day=1.0,
                            flow_deviation_pct=deviation_pct, residual_volume_ml=5, elapsed_days=14.5,
                            refill_id="r7")


@pytest.mark.parametrize(("deviation_pct", "measured", "severity", "text"), [
    (30.0, 1.3, "critical", "fast: 1.30 mL/day vs 1.00 labeled (+30.0 %)"),
    (-20.0, 0.8, "warning", "slow: 0.80 mL/day vs 1.00 labeled (-20.0 %)"),
    (0.5, 1.004, "warning", "fast: 1.00 mL/day vs 1.00 labeled (+0.5 %)"),
])
def test_flow_whole_fact(deviation_pct: float, measured: float, severity: str, text: str) -> None:
    # thresholds below 1 % so that a reading just off the label (0.5 %) still says its direction
    critical_pct = 25 if abs(deviation_pct) > 1 else 0.6
    result = rules.flow_abnormal(_flow(deviation_pct, measured), warning_pct=0.25, critical_pct=critical_pct)
    assert result == RuleResult(raise_=(AlertFact(
        kind="flow_abnormal", severity=severity, dedup_key="flow_abnormal:SN1",
        summary=f"pump SN1 flow {text}", **WHO,
        details={"refill_id": "r7", "refill_ids": ["r7"], "flow_deviation_pct": deviation_pct,
                 "measured_flow_ml_per_day": measured, "expected_flow_ml_per_day": 1.0,
                 "elapsed_days": 14.5}),))


def test_a_reading_within_limits_raises_and_clears_nothing() -> None:
    assert rules.flow_abnormal(_flow(-15.0, 0.85), warning_pct=15, critical_pct=25) == RuleResult()


def test_refill_completed_whole_clear() -> None:
    data = RefillCompletedData(id="r1", **WHO, performed_at=T0, residual_volume_ml=2, fill_volume_ml=30,
                               fill_type="saline", expected_flow_ml_per_day=1)
    assert rules.refill_completed(data) == RuleResult(clear=(ClearFact(
        resolution=f"refill r1 completed at {T0_ISO}", pump_serial="SN1",
        kinds=("refill_due_soon", "refill_overdue", "reservoir_near_empty")),))


def _voided(cancelled_appointment_id: str | None) -> RefillVoidedData:
    return RefillVoidedData(refill_id="r1", **WHO, reason="wrong pump", voided_by="nurse-7", voided_at=T0,
                            cancelled_appointment_id=cancelled_appointment_id)


def test_a_voided_refill_withdraws_its_flow_alert_only() -> None:
    assert rules.refill_voided(_voided(None)) == RuleResult(clear=(ClearFact(
        resolution="refill r1 entered in error by nurse-7: wrong pump", pump_serial="SN1",
        kinds=("flow_abnormal",), refill_id="r1"),))


def test_a_voided_refill_also_clears_the_alerts_of_the_appointment_it_created() -> None:
    resolution = "refill r1 entered in error by nurse-7: wrong pump"
    assert rules.refill_voided(_voided("a2")) == RuleResult(clear=(
        ClearFact(resolution=resolution, pump_serial="SN1", kinds=("flow_abnormal",), refill_id="r1"),
        ClearFact(resolution=resolution, dedup_key="refill_due_soon:a2"),
        ClearFact(resolution=resolution, dedup_key="refill_overdue:a2"),
        ClearFact(resolution=resolution, dedup_key="reservoir_near_empty:a2"),
    ))


def test_order_refused_whole_fact() -> None:
    data = OrderRefusedData(appointment_id="a1", therapy_id="t1", **WHO, fill_type="chemo",
                            due_at=datetime(2026, 11, 28, tzinfo=UTC), field="dose_mg",
                            reason="above the hard limit", refused_at=T0)
    assert rules.order_refused(data) == RuleResult(raise_=(AlertFact(
        kind="order_refused", severity="critical", dedup_key="order_refused:a1",
        summary="no pharmacy order sent for the chemo fill of pump SN1 due 2026-11-28T00:00:00Z: "
                "above the hard limit", **WHO,
        details={"appointment_id": "a1", "therapy_id": "t1", "field": "dose_mg",
                 "reason": "above the hard limit", "due_at": "2026-11-28T00:00:00Z"}),))


def test_delivery_late_whole_fact() -> None:
    data = DeliveryData.model_validate({**DELIVERY, "status": "accepted"})
    assert rules.delivery_late(data) == RuleResult(raise_=(AlertFact(
        kind="delivery_late", severity="warning", dedup_key="delivery_late:o1",
        summary="delivery o1 for pump SN1 late (needed by 2026-11-28T06:30:00Z, status accepted)", **WHO,
        details={"delivery_id": "o1", "appointment_id": "a1", "needed_by": "2026-11-28T06:30:00Z",
                 "status": "accepted"}),))


def _rejected(history: list[dict[str, str]]) -> DeliveryData:
    return DeliveryData.model_validate({**DELIVERY, "status": "rejected", "history": history})


def test_rejected_delivery_whole_fact_with_the_latest_rejection_reason() -> None:
    data = _rejected([{"at": "2026-11-26T09:00:00Z", "status": "rejected", "reason": "first"},
                      {"at": "2026-11-26T09:30:00Z", "status": "requested", "reason": "resent"},
                      {"at": "2026-11-26T10:00:00Z", "status": "rejected", "reason": "dose out of range"},
                      {"at": "2026-11-26T10:05:00Z", "status": "accepted", "reason": "later"}])
    assert rules.delivery_updated(data) == RuleResult(raise_=(AlertFact(
        kind="delivery_rejected", severity="critical", dedup_key="delivery_rejected:o1",
        summary="pharmacy rejected delivery o1 for pump SN1: dose out of range", **WHO,
        details={"delivery_id": "o1", "appointment_id": "a1", "needed_by": "2026-11-28T06:30:00Z",
                 "reason": "dose out of range"}),))


def test_rejected_delivery_without_a_reason() -> None:
    (fact,) = rules.delivery_updated(_rejected([])).raise_
    assert fact.summary == "pharmacy rejected delivery o1 for pump SN1"
    assert fact.details["reason"] is None


@pytest.mark.parametrize("status", ["delivered", "cancelled"])
def test_delivered_or_cancelled_whole_clear(status: str) -> None:
    data = DeliveryData.model_validate({**DELIVERY, "status": status})
    assert rules.delivery_updated(data) == RuleResult(clear=(ClearFact(
        resolution=f"delivery o1 {status}", dedup_key="delivery_late:o1"),))


def test_an_order_sent_whole_clear() -> None:
    data = DeliveryData.model_validate({**DELIVERY, "id": "o2"})
    assert rules.delivery_updated(data) == RuleResult(clear=(ClearFact(
        resolution="order o2 sent to the pharmacy", dedup_key="order_refused:a1"),))


def test_recall_whole_facts() -> None:
    data = RecallIssuedData(recall_id="rc1", model_code="M-40", lot_numbers=["L1", "L2"], reason="fast flow",
                            quarantined=["SN9"], implanted=[
                                {"serial_number": "SN1", "patient_mrn": "MRN-1", "center": "north"},
                                {"serial_number": "SN2", "patient_mrn": "MRN-2", "center": None}])
    details = {"recall_id": "rc1", "model_code": "M-40", "lot_numbers": ["L1", "L2"], "reason": "fast flow"}
    assert rules.recall_issued(data) == RuleResult(raise_=(
        AlertFact(kind="device_recalled_implanted", severity="critical",
                  dedup_key="device_recalled_implanted:rc1:SN1",
                  summary="implanted pump SN1 recalled (M-40): fast flow", **WHO, details=details),
        AlertFact(kind="device_recalled_implanted", severity="critical",
                  dedup_key="device_recalled_implanted:rc1:SN2",
                  summary="implanted pump SN2 recalled (M-40): fast flow",
                  patient_mrn="MRN-2", pump_serial="SN2", center=None, details=details),
    ))


def test_explant_whole_clear() -> None:
    data = PumpExplantedData(serial_number="SN1", patient_mrn="MRN-1", explanted_at=T0, reason="infection")
    assert rules.pump_explanted(data) == RuleResult(clear=(ClearFact(
        resolution=f"pump explanted at {T0_ISO}: infection", pump_serial="SN1",
        kinds=("refill_due_soon", "refill_overdue", "reservoir_near_empty", "device_recalled_implanted")),))


def test_system_stale_whole_fact_and_heartbeat_clear() -> None:
    assert rules.system_stale(last_heard_at=T0, now=T0 + timedelta(minutes=5, seconds=31)) == AlertFact(
        kind="system_stale", severity="critical", dedup_key="system_stale:scheduling",
        summary="no scheduling sweep heard for 6 min: due, overdue and near-empty checks may not be running",
        details={"last_heard_at": T0_ISO})
    assert rules.heartbeat_heard(T0) == RuleResult(clear=(ClearFact(
        resolution=f"scheduling sweep heard again at {T0_ISO}",
        dedup_key="system_stale:scheduling"),))


def test_iso_keeps_other_offsets_and_none() -> None:
    assert rules._iso(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    assert rules._iso(None) is None


@pytest.mark.parametrize(("a", "b", "higher"), [
    ("info", "warning", "warning"), ("warning", "info", "warning"), ("critical", "critical", "critical")])
def test_max_severity_both_ways(a: str, b: str, higher: str) -> None:
    assert rules.max_severity(a, b) == higher
