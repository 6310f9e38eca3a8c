"""The alert rules and the on-call arithmetic, pure: no database, no HTTP, no broker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.alerts import rules
from services.alerts.channels import PageMessage, page_alert
from services.alerts.oncall import Level, Member, next_attempt_delay_seconds, on_call_now, shift_at
from shared.contracts.inventory import PumpExplantedData, RecallIssuedData
from shared.contracts.scheduling import (
    AppointmentData,
    DeliveryData,
    FlowRecordedData,
    RefillCompletedData,
    RefillOverdueData,
    ReservoirNearEmptyData,
)
from shared.contracts.vocabulary import Severity
from tests.factories import T0, appointment_scheduled, at, delivery

APPT = appointment_scheduled("a1", "SN1")
DELIVERY = delivery("o1", "requested", serial="SN1", appointment_id="a1")

def flow(deviation_pct: float) -> FlowRecordedData:
    return FlowRecordedData(pump_serial="SN1", patient_mrn="MRN-1", center="north",
                            measured_flow_ml_per_day=1 + deviation_pct / 100,
                            expected_flow_ml_per_day=1.0, flow_deviation_pct=deviation_pct,
                            residual_volume_ml=5, elapsed_days=14, refill_id="r1")


def test_due_soon_is_info_keyed_by_appointment() -> None:
    (fact,) = rules.refill_due_soon(AppointmentData.model_validate(APPT)).raise_
    assert (fact.kind, fact.severity, fact.dedup_key) == ("refill_due_soon", "info", "refill_due_soon:a1")
    assert (fact.patient_mrn, fact.pump_serial, fact.center) == ("MRN-1", "SN1", "north")


@pytest.mark.parametrize(("hours_to_empty", "severity"),
                         [(None, "warning"), (200.0, "warning"), (72.0, "warning"),
                          (71.9, "critical"), (0.0, "critical")])
def test_overdue_is_warning_and_critical_below_the_hours_to_empty_threshold(
        hours_to_empty: float | None, severity: str) -> None:
    data = RefillOverdueData.model_validate({**APPT, "overdue_hours": 30, "hours_to_empty": hours_to_empty})
    (fact,) = rules.refill_overdue(data, critical_hours_to_empty=72).raise_
    assert fact.severity == severity
    assert fact.dedup_key == "refill_overdue:a1"


def test_near_empty_is_critical() -> None:
    data = ReservoirNearEmptyData.model_validate({**APPT, "hours_to_empty": 40})
    (fact,) = rules.reservoir_near_empty(data).raise_
    assert (fact.kind, fact.severity) == ("reservoir_near_empty", "critical")
    assert "40 h" in fact.summary


@pytest.mark.parametrize(("deviation_pct", "severity"),
                         [(0.0, None), (15.0, None), (-15.0, None), (15.1, "warning"),
                          (-20.0, "warning"), (25.0, "warning"), (25.1, "critical"),
                          (-40.0, "critical")])
def test_flow_thresholds(deviation_pct: float, severity: str | None) -> None:
    result = rules.flow_abnormal(flow(deviation_pct), warning_pct=15, critical_pct=25)
    assert [f.severity for f in result.raise_] == ([severity] if severity else [])
    assert not result.clear  # a normal reading never resolves by itself (a person does)


def test_flow_alert_is_one_per_pump_and_says_the_direction() -> None:
    (fast,) = rules.flow_abnormal(flow(30), warning_pct=15, critical_pct=25).raise_
    (slow,) = rules.flow_abnormal(flow(-30), warning_pct=15, critical_pct=25).raise_
    assert fast.dedup_key == slow.dedup_key == "flow_abnormal:SN1"
    assert "fast" in fast.summary and "slow" in slow.summary


@given(st.floats(min_value=-100, max_value=1000, allow_nan=False))
def test_flow_severity_never_falls_as_the_deviation_grows(deviation_pct: float) -> None:
    def rank(d: float) -> int:
        r = rules.flow_abnormal(flow(d), warning_pct=15, critical_pct=25).raise_
        return Severity(r[0].severity).rank + 1 if r else 0
    assert rank(deviation_pct) <= rank(deviation_pct * 1.5)


def test_refill_completed_clears_the_pumps_refill_alerts() -> None:
    data = RefillCompletedData(id="r1", pump_serial="SN1", patient_mrn="MRN-1", center="north",
                               performed_at=T0, residual_volume_ml=2, fill_volume_ml=30,
                               fill_type="saline", expected_flow_ml_per_day=1)
    (clear,) = rules.refill_completed(data).clear
    assert clear.pump_serial == "SN1"
    assert set(clear.kinds) == {"refill_due_soon", "refill_overdue", "reservoir_near_empty"}


def test_delivery_late_is_warning() -> None:
    (fact,) = rules.delivery_late(DeliveryData.model_validate(DELIVERY)).raise_
    assert (fact.kind, fact.severity, fact.dedup_key) == ("delivery_late", "warning", "delivery_late:o1")


def test_rejected_delivery_is_critical_with_the_pharmacy_reason() -> None:
    data = DeliveryData.model_validate({**DELIVERY, "status": "rejected", "history": [
        {"at": at(hours=-4), "status": "rejected", "reason": "dose out of range"}]})
    (fact,) = rules.delivery_updated(data).raise_
    assert (fact.kind, fact.severity) == ("delivery_rejected", "critical")
    assert "dose out of range" in fact.summary


@pytest.mark.parametrize("status", ["delivered", "cancelled"])
def test_delivered_or_cancelled_clears_the_late_alert(status: str) -> None:
    result = rules.delivery_updated(DeliveryData.model_validate({**DELIVERY, "status": status}))
    assert [c.dedup_key for c in result.clear] == ["delivery_late:o1"]
    assert not result.raise_


def test_an_order_sent_clears_the_refusal_of_its_appointment() -> None:
    result = rules.delivery_updated(DeliveryData.model_validate({**DELIVERY, "status": "requested"}))
    assert [c.dedup_key for c in result.clear] == [f"order_refused:{DELIVERY['appointment_id']}"]
    assert not result.raise_


@pytest.mark.parametrize("status", ["accepted", "compounded", "dispatched"])
def test_other_delivery_statuses_change_nothing(status: str) -> None:
    result = rules.delivery_updated(DeliveryData.model_validate({**DELIVERY, "status": status}))
    assert result == rules.RuleResult()


def test_recall_raises_one_critical_per_implanted_pump() -> None:
    data = RecallIssuedData(recall_id="rc1", model_code="M", lot_numbers=["L1"], reason="fast flow",
                            quarantined=["SN9"], implanted=[
                                {"serial_number": "SN1", "patient_mrn": "MRN-1", "center": "north"},
                                {"serial_number": "SN2", "patient_mrn": "MRN-2", "center": "south"}])
    facts = rules.recall_issued(data).raise_
    assert [(f.pump_serial, f.center, f.severity) for f in facts] == [
        ("SN1", "north", "critical"), ("SN2", "south", "critical")]
    assert len({f.dedup_key for f in facts}) == 2


def test_explant_clears_refill_and_recall_alerts_of_the_pump() -> None:
    data = PumpExplantedData(serial_number="SN1", patient_mrn="MRN-1", explanted_at=T0, reason="x")
    (clear,) = rules.pump_explanted(data).clear
    assert clear.pump_serial == "SN1" and "device_recalled_implanted" in clear.kinds


def test_watchdog_stale_after_the_allowed_intervals() -> None:
    assert not rules.is_stale(last_heard_at=T0, now=T0 + timedelta(seconds=180),
                              sweep_interval_seconds=60, stale_after_intervals=3)
    assert rules.is_stale(last_heard_at=T0, now=T0 + timedelta(seconds=181),
                          sweep_interval_seconds=60, stale_after_intervals=3)
    fact = rules.system_stale(last_heard_at=T0, now=T0 + timedelta(minutes=5))
    assert (fact.kind, fact.severity, fact.dedup_key) == ("system_stale", "critical", rules.SYSTEM_STALE_KEY)
    assert [c.dedup_key for c in rules.heartbeat_heard(T0).clear] == [rules.SYSTEM_STALE_KEY]


def test_max_severity() -> None:
    assert rules.max_severity("info", "critical") == "critical"
    assert rules.max_severity("critical", "warning") == "critical"


# ---- on-call rotations ---------------------------------------------------------------------

ANN, BOB, CY = (Member(n, "log", n) for n in ("ann", "bob", "cy"))
LEVEL = Level(members=(ANN, BOB, CY), rotation_start=T0, shift_hours=12)


@pytest.mark.parametrize(("hours_after", "who"),
                         [(0, ANN), (11.99, ANN), (12, BOB), (24, CY), (36, ANN), (-0.01, CY), (-12.5, BOB)])
def test_members_take_turns_of_shift_hours(hours_after: float, who: Member) -> None:
    shift = shift_at(LEVEL, 1, T0 + timedelta(hours=hours_after))
    assert shift.member == who
    assert shift.started_at <= T0 + timedelta(hours=hours_after) < shift.ends_at


@given(st.floats(min_value=-1e5, max_value=1e5, allow_nan=False))
def test_the_shift_covering_a_time_always_contains_it(hours: float) -> None:
    at = T0 + timedelta(hours=hours)
    shift = shift_at(LEVEL, 1, at)
    assert shift.started_at <= at < shift.ends_at
    assert shift.ends_at - shift.started_at == timedelta(hours=12)


def test_on_call_now_lists_levels_in_order() -> None:
    second = Level(members=(BOB,), rotation_start=T0, shift_hours=24)
    assert [(s.level, s.member.name) for s in on_call_now([LEVEL, second], T0)] == [(1, "ann"), (2, "bob")]


def test_backoff_doubles_from_the_first_retry() -> None:
    delays = [next_attempt_delay_seconds(attempts=n, first_retry_seconds=2) for n in (1, 2, 3, 4)]
    assert delays == [2, 4, 8, 16]


def test_page_carries_mrn_pump_center_summary_and_link_but_no_details() -> None:
    alert = {"id": "x", "kind": "flow_abnormal", "severity": "critical", "status": "firing",
             "patient_mrn": "MRN-1", "pump_serial": "SN1", "center": "north", "summary": "s",
             "details": {"given_name": "Ann"}, "first_raised_at": "t", "last_raised_at": "t",
             "occurrences": 1, "escalation_level": 1}
    page = PageMessage(notification_id="n", channel="webhook", address="http://x", recipient="ann",
                       level=1, alert=page_alert(alert), ack_url="http://dash/alerts/x")
    body = page.body()
    assert set(body) >= {"alert", "level", "recipient", "ack_url"}
    assert "details" not in body["alert"]
    assert body["alert"]["patient_mrn"] == "MRN-1" and body["ack_url"].endswith("/alerts/x")


# ---- flow surveillance ---------------------------------------------------------------------

def test_a_drifting_lot_is_one_warning_per_model_and_lot_for_biomed_with_its_evidence() -> None:
    from shared.contracts.scheduling import LotFlowDriftData
    from tests.factories import lot_flow_drift

    (fact,) = rules.lot_flow_drift(LotFlowDriftData.model_validate(lot_flow_drift("L9"))).raise_
    assert (fact.kind, fact.severity) == ("lot_flow_drift", "warning")
    assert fact.dedup_key == "lot_flow_drift:INTERA-3000:L9"
    assert fact.center is None and fact.pump_serial is None and fact.patient_mrn is None
    assert fact.details["audience"] == "biomed"
    assert fact.details["pump_serials"][0] == "L9-P0" and fact.details["p_value"] == 1e-8
    assert "runs fast" in fact.summary and "+8.0 %" in fact.summary and "p = 1e-08" in fact.summary
    slow = rules.lot_flow_drift(LotFlowDriftData.model_validate(
        lot_flow_drift("L9", difference_pct=-6.0))).raise_[0]
    assert "runs slow" in slow.summary


def test_a_trend_crossing_the_band_warns_and_one_back_inside_resolves() -> None:
    from shared.contracts.scheduling import FlowTrendData
    from tests.factories import flow_trend

    (fact,) = rules.flow_trend(FlowTrendData.model_validate(flow_trend("SN7"))).raise_
    assert (fact.kind, fact.severity, fact.dedup_key) == ("flow_trend", "warning", "flow_trend:SN7")
    assert (fact.pump_serial, fact.center, fact.patient_mrn) == ("SN7", "north", "MRN-1")
    assert "+18.0 %" in fact.summary and fact.details["crossing"] is True
    back = rules.flow_trend(FlowTrendData.model_validate(flow_trend("SN7", crossing=False,
                                                                    predicted_pct=9.0)))
    assert back.raise_ == () and back.clear[0].dedup_key == "flow_trend:SN7"
    assert "+9.0 %" in back.clear[0].resolution
