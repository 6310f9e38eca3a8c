"""Events scheduling publishes (CONTRACT.md, Events)."""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict

from shared.contracts.vocabulary import (
    AppointmentStatus,
    DeliveryStatus,
    DueBasis,
    FillType,
    TherapyStatus,
)


class AppointmentData(BaseModel):
    """An appointment, as `hai.scheduling.appointment.scheduled` and `.refill.due_soon` carry it."""

    model_config = ConfigDict(extra="allow")

    id: str
    therapy_id: str
    patient_mrn: str
    center: str
    pump_serial: str
    fill_type: FillType
    due_at: AwareDatetime
    scheduled_for: AwareDatetime | None = None
    status: AppointmentStatus
    projected_empty_at: AwareDatetime | None = None
    delivery_id: str | None = None
    due_basis: DueBasis | None = None  # added


class AppointmentScheduledData(AppointmentData):
    """`hai.scheduling.appointment.scheduled`: a new open appointment (a therapy's first fill,
    the fill after a refill, an appointment booked or opened again)."""


class RefillDueSoonData(AppointmentData):
    """`hai.scheduling.refill.due_soon`: an open appointment coming due."""


class RefillOverdueData(AppointmentData):
    """`hai.scheduling.refill.overdue`: the appointment plus how late, and how long until empty."""

    overdue_hours: float
    hours_to_empty: float | None = None


class RefillCompletedData(BaseModel):
    """`hai.scheduling.refill.completed`: the refill."""

    model_config = ConfigDict(extra="allow")

    id: str
    pump_serial: str
    patient_mrn: str
    center: str
    performed_at: AwareDatetime
    residual_volume_ml: float
    fill_volume_ml: float
    fill_type: FillType
    appointment_id: str | None = None
    delivery_id: str | None = None
    elapsed_days: float | None = None
    measured_flow_ml_per_day: float | None = None
    expected_flow_ml_per_day: float
    flow_deviation_pct: float | None = None
    outside_window: bool = False
    next_appointment: dict[str, Any] | None = None


class FlowRecordedData(BaseModel):
    """`hai.scheduling.flow.recorded`."""

    model_config = ConfigDict(extra="allow")

    pump_serial: str
    patient_mrn: str
    center: str
    measured_flow_ml_per_day: float
    expected_flow_ml_per_day: float
    flow_deviation_pct: float
    residual_volume_ml: float
    elapsed_days: float
    refill_id: str


class DeliveryHistoryEntry(BaseModel):
    at: AwareDatetime
    status: DeliveryStatus
    reason: str | None = None


class DeliveryData(BaseModel):
    """A delivery, as `hai.scheduling.delivery.updated` / `.late` carry it (center added for
    paging)."""

    model_config = ConfigDict(extra="allow")

    id: str
    appointment_id: str
    patient_mrn: str
    pump_serial: str
    center: str | None = None
    needed_by: AwareDatetime
    status: DeliveryStatus
    drugs: list[dict[str, Any]] = []
    history: list[DeliveryHistoryEntry] = []
    administered_at: AwareDatetime | None = None  # added: the chemo fill that used the order
    refill_id: str | None = None  # added


class DeliveryUpdatedData(DeliveryData):
    """`hai.scheduling.delivery.updated`: an order requested, or its status moved."""


class DeliveryLateData(DeliveryData):
    """`hai.scheduling.delivery.late`: an order not delivered by its `needed_by`."""


class SweepJob(BaseModel):
    name: str
    ok: bool
    facts: dict[str, Any] = {}


class SweepCompletedData(BaseModel):
    """`hai.scheduling.sweep.completed`: the heartbeat, once per sweep."""

    model_config = ConfigDict(extra="allow")

    at: AwareDatetime
    jobs: list[SweepJob]


class ReservoirNearEmptyData(AppointmentData):
    """`hai.scheduling.reservoir.near_empty` (added): the open appointment of a pump projected to
    run dry within the near-empty horizon, and the hours left."""

    hours_to_empty: float


class RefillVoidedData(BaseModel):
    """`hai.scheduling.refill.voided`: a refill entered in error (its row stays, out of every
    figure); the appointment it created was cancelled and the one it completed opened again."""

    model_config = ConfigDict(extra="allow")

    refill_id: str
    pump_serial: str
    patient_mrn: str
    center: str
    reason: str
    voided_by: str
    voided_at: AwareDatetime
    cancelled_appointment_id: str | None = None
    reopened_appointment_id: str | None = None


class OrderRefusedData(BaseModel):
    """`hai.scheduling.order.refused` (added): a chemo fill's pharmacy order that was not sent,
    because its dose could not be computed or broke a hard limit; `field` names the culprit."""

    model_config = ConfigDict(extra="allow")

    appointment_id: str
    therapy_id: str
    patient_mrn: str
    pump_serial: str
    center: str
    fill_type: FillType
    due_at: AwareDatetime
    field: str
    reason: str
    refused_at: AwareDatetime


class LotFlowDriftData(BaseModel):
    """`hai.scheduling.lot.flow_drift` (added): a pump model's lot whose pumps' mean flow
    deviations differ from the model's other pumps (Welch's t-test, DOMAIN.md "Flow
    surveillance"), with the evidence; announced again as evidence grows while it drifts."""

    model_config = ConfigDict(extra="allow")

    model_code: str
    lot_number: str
    pump_serials: list[str]
    lot_pumps: int
    lot_readings: int
    lot_mean_deviation_pct: float
    lot_sd_pct: float
    rest_pumps: int
    rest_readings: int
    rest_mean_deviation_pct: float
    rest_sd_pct: float
    difference_pct: float
    ci95_pct: list[float]
    test: str
    t: float
    df: float
    p_value: float
    alpha: float
    min_difference_pct: float
    reason: str
    tested_at: AwareDatetime


class FlowTrendData(BaseModel):
    """`hai.scheduling.flow.trend` (added): the least-squares trend of a pump's last flow
    deviations after a reading, and the next reading it predicts; `crossing` when the
    prediction leaves the ±band while the last reading is inside it."""

    model_config = ConfigDict(extra="allow")

    pump_serial: str
    patient_mrn: str
    center: str
    refill_id: str
    readings: int
    slope_pct_per_day: float
    slope_se_pct_per_day: float
    last_at: AwareDatetime
    last_deviation_pct: float
    predicted_at: AwareDatetime
    predicted_deviation_pct: float
    prediction_se_pct: float
    band_pct: float
    crossing: bool
class CenterSettingsValues(BaseModel):
    """A centre's own settings (CONTRACT.md, Centre settings); null: the system default applies."""

    time_zone: str | None = None  # IANA
    refill_interval_days: int | None = None
    refill_window_days: int | None = None
    due_soon_hours: int | None = None
    near_empty_hours: int | None = None
    flow_warning_pct: float | None = None
    flow_critical_pct: float | None = None
    escalation_delay_seconds: int | None = None
    ack_timeout_seconds: int | None = None


class CenterSettingsChangedData(BaseModel):
    """`hai.scheduling.center.settings_changed` (added): a centre's own settings after an
    admin's change (every field; null is the default); `version` grows with each change."""

    model_config = ConfigDict(extra="allow")

    center: str
    version: int
    values: CenterSettingsValues
    changed_by: str
    changed_at: AwareDatetime


class TherapyStatusChangedData(BaseModel):
    """`hai.scheduling.therapy.status_changed` (added): a therapy paused, resumed or stopped;
    `at` orders the changes of one therapy (a consumer keeps the latest)."""

    model_config = ConfigDict(extra="allow")

    therapy_id: str
    patient_mrn: str
    pump_serial: str
    center: str
    status: TherapyStatus
    reason: str | None = None
    changed_by: str
    at: AwareDatetime


class PatientCenterChangedData(BaseModel):
    """`hai.scheduling.patient.center_changed` (added): a patient transferred to another centre,
    with the open work that moved with them (ids only): the implanted pumps, the scheduled
    appointments and the deliveries not yet administered; past refills keep their centre."""

    model_config = ConfigDict(extra="allow")

    patient_mrn: str
    center: str  # the new centre
    from_center: str
    pump_serials: list[str] = []
    therapy_ids: list[str] = []
    appointment_ids: list[str] = []
    delivery_ids: list[str] = []
    changed_by: str
    changed_at: AwareDatetime
