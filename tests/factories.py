"""One builder per contract payload (shared/contracts), and the one fixed time the tests start at.

Every builder returns a valid payload of its event (checked against the contract's model, so a
contract change shows here first); a test passes what it cares about and lets the rest default.
A test that needs an invalid payload mutates a valid one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from shared.contracts.inventory import (
    PumpData,
    PumpExplantedData,
    PumpStatusChangedData,
    RecallIssuedData,
)
from shared.contracts.pharmacy import OrderStatusData
from shared.contracts.scheduling import (
    AppointmentData,
    CenterSettingsChangedData,
    DeliveryData,
    FlowRecordedData,
    FlowTrendData,
    LotFlowDriftData,
    OrderRefusedData,
    PatientCenterChangedData,
    RefillCompletedData,
    RefillOverdueData,
    RefillVoidedData,
    ReservoirNearEmptyData,
    SweepCompletedData,
    TherapyStatusChangedData,
)

# The time every test clock starts at (a Monday morning; no test depends on today's date).
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)

SERIAL = "SN1001"
MRN = "MRN-1"
CENTER = "north"
MODEL_CODE = "INTERA-3000"


def iso(when: datetime) -> str:
    """A time as the APIs write it: UTC, whole seconds, `Z`."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def at(**delta: float) -> str:
    """T0 moved by `delta` (timedelta's arguments), as the APIs write it."""
    return iso(T0 + timedelta(**delta))


def _valid(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    model.model_validate(data)
    return data


# ---------------------------------------------------------------- inventory

def pump_implanted(serial: str = SERIAL, mrn: str = MRN, *, center: str = CENTER,
                   model_code: str = MODEL_CODE, reservoir_ml: float = 30.0,
                   labeled_flow_ml_per_day: float = 1.0,
                   implanted_at: datetime | None = None, **extra: Any) -> dict[str, Any]:
    """`hai.inventory.pump.implanted`."""
    return _valid(PumpData, {
        "serial_number": serial, "model_code": model_code, "reservoir_ml": reservoir_ml,
        "labeled_flow_ml_per_day": labeled_flow_ml_per_day, "status": "implanted",
        "patient_mrn": mrn, "center": center,
        "implanted_at": (implanted_at or T0 - timedelta(days=32)).isoformat(), **extra})


def pump_explanted(serial: str = SERIAL, mrn: str = MRN, *, center: str = CENTER,
                   reason: str = "end of therapy", **extra: Any) -> dict[str, Any]:
    """`hai.inventory.pump.explanted`."""
    return _valid(PumpExplantedData, {
        "serial_number": serial, "patient_mrn": mrn, "explanted_at": iso(T0), "reason": reason,
        "center": center, **extra})


def pump_status_changed(serial: str = SERIAL, *, from_status: str = "in_stock",
                        to_status: str = "quarantined", reason: str = "recall",
                        **extra: Any) -> dict[str, Any]:
    """`hai.inventory.pump.status_changed`."""
    return _valid(PumpStatusChangedData, {
        "serial_number": serial, "from_status": from_status, "to_status": to_status,
        "reason": reason, **extra})


def recall_issued(serial: str = SERIAL, mrn: str = MRN, *, center: str = CENTER,
                  model_code: str = MODEL_CODE, lots: tuple[str, ...] = ("LOT42",),
                  quarantined: tuple[str, ...] = ("SN-IN-STOCK",), **extra: Any) -> dict[str, Any]:
    """`hai.inventory.recall.issued`: one implanted pump of the recalled lots."""
    return _valid(RecallIssuedData, {
        "recall_id": "rc-1", "model_code": model_code, "lot_numbers": list(lots),
        "reason": "valve", "quarantined": list(quarantined),
        "implanted": [{"serial_number": serial, "patient_mrn": mrn, "center": center}], **extra})


# ---------------------------------------------------------------- pharmacy

def order_status(order_id: str = "ord-1", status: str = "accepted", *,
                 when: datetime | None = None, **extra: Any) -> dict[str, Any]:
    """`hai.pharmacy.order.status`."""
    return _valid(OrderStatusData, {"order_id": order_id, "status": status,
                                    "at": iso(when or T0), **extra})


# ---------------------------------------------------------------- scheduling

def appointment_scheduled(appt_id: str = "appt-1", serial: str = SERIAL, *, mrn: str = MRN,
                center: str = CENTER, **extra: Any) -> dict[str, Any]:
    """`hai.scheduling.appointment.scheduled` / `.refill.due_soon`: an appointment two days on."""
    return _valid(AppointmentData, {
        "id": appt_id, "therapy_id": "th-1", "patient_mrn": mrn, "center": center,
        "pump_serial": serial, "fill_type": "chemo", "due_at": at(days=2),
        "status": "scheduled", **extra})


def refill_overdue(appt_id: str = "appt-1", serial: str = SERIAL, *, overdue_hours: float = 5.0,
                   hours_to_empty: float | None = 30.0, **extra: Any) -> dict[str, Any]:
    """`hai.scheduling.refill.overdue`."""
    return _valid(RefillOverdueData, appointment_scheduled(
        appt_id, serial, overdue_hours=overdue_hours, hours_to_empty=hours_to_empty, **extra))


def reservoir_near_empty(appt_id: str = "appt-1", serial: str = SERIAL, *,
                         hours_to_empty: float = 20.0, **extra: Any) -> dict[str, Any]:
    """`hai.scheduling.reservoir.near_empty`."""
    return _valid(ReservoirNearEmptyData, appointment_scheduled(
        appt_id, serial, hours_to_empty=hours_to_empty, **extra))


def flow_recorded(serial: str = SERIAL, deviation_pct: float = 30.0, *, mrn: str = MRN,
                  center: str = CENTER, refill_id: str | None = None,
                  expected_flow_ml_per_day: float = 1.0, **extra: Any) -> dict[str, Any]:
    """`hai.scheduling.flow.recorded`: a measured flow `deviation_pct` off the expected one."""
    return _valid(FlowRecordedData, {
        "pump_serial": serial, "patient_mrn": mrn, "center": center,
        "measured_flow_ml_per_day": expected_flow_ml_per_day * (1 + deviation_pct / 100),
        "expected_flow_ml_per_day": expected_flow_ml_per_day,
        "flow_deviation_pct": deviation_pct, "residual_volume_ml": 10.0, "elapsed_days": 14.0,
        "refill_id": refill_id or f"refill-{serial}", **extra})


def refill_completed(refill_id: str = "rf-1", serial: str = SERIAL, *, mrn: str = MRN,
                     center: str = CENTER, **extra: Any) -> dict[str, Any]:
    """`hai.scheduling.refill.completed`: a chemo fill an hour before T0."""
    return _valid(RefillCompletedData, {
        "id": refill_id, "pump_serial": serial, "patient_mrn": mrn, "center": center,
        "performed_at": at(hours=-1), "residual_volume_ml": 3.0, "fill_volume_ml": 30.0,
        "fill_type": "chemo", "expected_flow_ml_per_day": 1.0, "appointment_id": "appt-1",
        **extra})


def delivery(order_id: str = "ord-1", status: str = "requested", *, serial: str = SERIAL,
             mrn: str = MRN, center: str = CENTER, appointment_id: str = "appt-1",
             **extra: Any) -> dict[str, Any]:
    """`hai.scheduling.delivery.updated` / `.delivery.late`: an order needed in two days."""
    return _valid(DeliveryData, {
        "id": order_id, "appointment_id": appointment_id, "patient_mrn": mrn,
        "pump_serial": serial, "center": center, "needed_by": at(days=2), "status": status,
        **extra})


def sweep_completed(when: datetime | None = None, **extra: Any) -> dict[str, Any]:
    """`hai.scheduling.sweep.completed`: the heartbeat, every job fine."""
    return _valid(SweepCompletedData, {"at": iso(when or T0),
                                       "jobs": [{"name": "overdue", "ok": True}], **extra})


def refill_voided(refill_id: str = "rf-1", serial: str = SERIAL, *, mrn: str = MRN,
                  center: str = CENTER, **extra: Any) -> dict[str, Any]:
    """`hai.scheduling.refill.voided`."""
    return _valid(RefillVoidedData, {
        "refill_id": refill_id, "pump_serial": serial, "patient_mrn": mrn, "center": center,
        "reason": "wrong pump", "voided_by": "nina", "voided_at": iso(T0),
        "cancelled_appointment_id": "appt-2", "reopened_appointment_id": "appt-1", **extra})


def order_refused(appt_id: str = "appt-1", serial: str = SERIAL, *, mrn: str = MRN,
                  center: str = CENTER, **extra: Any) -> dict[str, Any]:
    """`hai.scheduling.order.refused`: a chemo fill's order above a hard dose limit."""
    return _valid(OrderRefusedData, {
        "appointment_id": appt_id, "therapy_id": "th-1", "patient_mrn": mrn,
        "pump_serial": serial, "center": center, "fill_type": "chemo", "due_at": at(days=2),
        "field": "floxuridine", "reason": "above the hard limit", "refused_at": iso(T0),
        **extra})


def lot_flow_drift(lot: str = "LOT-7", *, model_code: str = MODEL_CODE, lot_pumps: int = 6,
                   difference_pct: float = 8.0, **extra: Any) -> dict[str, Any]:
    """`hai.scheduling.lot.flow_drift`: a lot running `difference_pct` faster than the rest."""
    return _valid(LotFlowDriftData, {
        "model_code": model_code, "lot_number": lot,
        "pump_serials": [f"{lot}-P{i}" for i in range(lot_pumps)], "lot_pumps": lot_pumps,
        "lot_readings": 2 * lot_pumps, "lot_mean_deviation_pct": difference_pct,
        "lot_sd_pct": 1.0, "rest_pumps": 40, "rest_readings": 80, "rest_mean_deviation_pct": 0.0,
        "rest_sd_pct": 2.0, "difference_pct": difference_pct,
        "ci95_pct": [difference_pct - 1.2, difference_pct + 1.2], "test": "welch_t_two_sided",
        "t": 15.2, "df": 11.3, "p_value": 1e-8, "alpha": 0.001, "min_difference_pct": 4.0,
        "reason": "lot runs faster", "tested_at": iso(T0), **extra})


def flow_trend(serial: str = SERIAL, *, crossing: bool = True, predicted_pct: float = 18.0,
               mrn: str = MRN, center: str = CENTER, **extra: Any) -> dict[str, Any]:
    """`hai.scheduling.flow.trend`: a pump's readings 2, 6, 10, 14 % predicting `predicted_pct`."""
    return _valid(FlowTrendData, {
        "pump_serial": serial, "patient_mrn": mrn, "center": center, "refill_id": "rf-4",
        "readings": 4, "slope_pct_per_day": 0.2857, "slope_se_pct_per_day": 0.0,
        "last_at": iso(T0), "last_deviation_pct": 14.0, "predicted_at": at(days=14),
        "predicted_deviation_pct": predicted_pct, "prediction_se_pct": 0.0, "band_pct": 15.0,
        "crossing": crossing, **extra})


def center_settings_changed(center: str = CENTER, *, version: int = 1,
                            **values: Any) -> dict[str, Any]:
    """`hai.scheduling.center.settings_changed`: a centre's own settings (the rest default)."""
    return _valid(CenterSettingsChangedData, {
        "center": center, "version": version, "values": values or {"flow_warning_pct": 10.0},
        "changed_by": "admin-ann", "changed_at": iso(T0)})


# ---------------------------------------------------------------- request bodies

def oncall_body(*members_per_level: list[tuple[str, str, str]], delay_s: int = 900,
                shift_hours: float = 12, rotation_start: str = "2026-11-01T08:00:00Z"
                ) -> dict[str, Any]:
    """A PUT /v1/oncall/{center} body: one list of (name, channel, address) per level."""
    return {"escalation_delay_seconds": delay_s, "levels": [
        {"members": [{"name": n, "channel": c, "address": a} for n, c, a in members],
         "rotation_start": rotation_start, "shift_hours": shift_hours}
        for members in members_per_level]}


def therapy_status_changed(status: str, serial: str = SERIAL, *, therapy_id: str = "th-1",
                           minutes: float = 0, mrn: str = MRN, center: str = CENTER,
                           reason: str | None = None) -> dict[str, Any]:
    """`hai.scheduling.therapy.status_changed`: the therapy on `serial` paused, active again or
    stopped, `minutes` after T0."""
    return _valid(TherapyStatusChangedData, {
        "therapy_id": therapy_id, "patient_mrn": mrn, "pump_serial": serial, "center": center,
        "status": status, "reason": reason, "changed_by": "dr-onc", "at": at(minutes=minutes)})


def patient_center_changed(to_center: str = "south", *, from_center: str = CENTER,
                           mrn: str = MRN, serial: str = SERIAL, minutes: float = 0,
                           **extra: Any) -> dict[str, Any]:
    """`hai.scheduling.patient.center_changed`: the patient (and the pump `serial`) transferred
    from `from_center` to `to_center`, `minutes` after T0."""
    return _valid(PatientCenterChangedData, {
        "patient_mrn": mrn, "center": to_center, "from_center": from_center,
        "pump_serials": [serial], "therapy_ids": ["th-1"], "appointment_ids": ["appt-1"],
        "delivery_ids": [], "changed_by": "nina", "changed_at": at(minutes=minutes), **extra})
