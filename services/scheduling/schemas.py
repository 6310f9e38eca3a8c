"""Scheduling's request and response shapes (CONTRACT.md, Scheduling)."""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)
from pydantic_core import PydanticCustomError

from services.scheduling.urgency import Urgency
from shared.contracts.pharmacy import OrderStatus
from shared.contracts.vocabulary import (
    AppointmentStatus,
    DeliveryStatus,
    DueBasis,
    FillType,
    RefillStatus,
    Regimen,
    SettingSource,
    TherapyStatus,
)
from shared.pagination import Page
from shared.schemas import RequestModel
from shared.text import LINE_BREAKS, LINE_PATTERN, Centre, Code, Key, Line, Paragraph, text_rules

Sex = Literal["female", "male"]
DosingWeightMode = Literal["actual", "adjusted"]
TherapyAction = Literal["pause", "resume", "stop"]
# free text that may be left empty: a refill's notes, a pharmacy's reason
Notes = Annotated[str, StringConstraints(max_length=4000), text_rules(keep=LINE_BREAKS,
                                                                      not_blank=False)]
# the pharmacy's own lot number of a compounded fill (its format is the pharmacy's)
PharmacyLot = Annotated[str, StringConstraints(max_length=100, pattern=LINE_PATTERN),
                        text_rules(not_blank=False)]


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PatientCreate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    mrn: Code
    given_name: Line
    family_name: Line
    birth_date: date
    weight_kg: float = Field(gt=0, le=500)
    center: Centre
    height_cm: float | None = Field(default=None, gt=0, le=300)
    sex: Sex | None = None


class PatientUpdate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    given_name: Line | None = None
    family_name: Line | None = None
    birth_date: date | None = None
    weight_kg: float | None = Field(default=None, gt=0, le=500)
    center: Centre | None = None
    height_cm: float | None = Field(default=None, gt=0, le=300)
    sex: Sex | None = None


class PatientRead(_Read):
    mrn: str
    given_name: str
    family_name: str
    birth_date: date
    weight_kg: float
    center: str
    height_cm: float | None
    sex: str | None
    created_at: datetime
    updated_at: datetime


class CenterRead(BaseModel):
    """A centre scheduling knows: the code its patients carry (`center`)."""

    code: str
    patients: int = Field(description="how many patients of this centre scheduling knows")


class TherapyCreate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    patient_mrn: Code
    pump_serial: Code
    regimen: Regimen
    start_on: date
    refill_interval_days: int | None = Field(default=None, ge=1, le=120)
    fudr_mg_per_kg_day: float | None = Field(default=None, gt=0)
    dosing_weight: DosingWeightMode = "actual"
    dexamethasone_mg: float | None = Field(default=None, ge=0)
    heparin_units: float | None = Field(default=None, ge=0)
    fill_volume_ml: float | None = Field(default=None, gt=0, le=1000)
    dose_override_reason: Paragraph | None = Field(
        default=None,
        description="an oncologist's reason for a FUDR dose outside the label range "
                    "(0.1–0.6 mg/kg/day by default); the token's subject is recorded as "
                    "dose_override_by")


class TherapyUpdate(RequestModel):
    """`PATCH /v1/therapies/{id}`: an `action` (pause | resume | stop) and/or new dosing settings."""

    model_config = ConfigDict(extra="forbid")

    action: TherapyAction | None = Field(
        default=None, description="pause (no pharmacy orders; open orders cancelled), resume, "
                                  "or stop (open appointments and orders cancelled; final)")
    reason: Paragraph | None = None
    refill_interval_days: int | None = Field(default=None, ge=1, le=120)
    fudr_mg_per_kg_day: float | None = Field(default=None, gt=0)
    dosing_weight: DosingWeightMode | None = None
    dexamethasone_mg: float | None = Field(default=None, ge=0)
    heparin_units: float | None = Field(default=None, ge=0)
    fill_volume_ml: float | None = Field(default=None, gt=0, le=1000)
    dose_override_reason: Paragraph | None = None


class TherapyRead(_Read):
    id: str
    patient_mrn: str
    pump_serial: str
    regimen: Regimen
    status: TherapyStatus
    status_reason: str | None
    start_on: date
    refill_interval_days: int
    fudr_mg_per_kg_day: float | None
    dosing_weight: str
    dexamethasone_mg: float | None
    heparin_units: float | None
    fill_volume_ml: float | None
    dose_override_by: str | None
    dose_override_reason: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime


class OrderDrugRead(BaseModel):
    code: str
    name: str
    amount: float
    unit: str
    basis: str


class NextOrderRead(BaseModel):
    """`GET /v1/therapies/{id}/next-order`: the drugs the therapy's next chemo fill would be
    ordered with now (weight, dose, flow as they stand), or why it would be refused."""

    therapy_id: str
    patient_mrn: str
    pump_serial: str
    regimen: Regimen
    therapy_status: TherapyStatus
    appointment_id: str | None = Field(default=None, description="the next scheduled chemo fill")
    due_at: datetime | None = None
    delivery_id: str | None = Field(default=None, description="its order, when already placed")
    fill_volume_ml: float | None = None
    flow_ml_per_day: float | None = None
    flow_source: str | None = Field(default=None, description="latest measured | labeled")
    dosing_weight_kg: float | None = None
    drugs: list[OrderDrugRead] = Field(default_factory=list)
    diluent: str | None = None
    refused_field: str | None = Field(default=None, description="the setting that stops the order")
    refused_reason: str | None = None


class AppointmentRead(_Read):
    id: str
    therapy_id: str
    patient_mrn: str
    center: str
    pump_serial: str
    fill_type: FillType
    due_at: datetime
    scheduled_for: datetime | None
    status: AppointmentStatus
    projected_empty_at: datetime | None
    delivery_id: str | None
    refill_id: str | None = None
    due_basis: DueBasis = Field(
        default=DueBasis.INTERVAL, description="which rule set due_at: performed_at + the refill "
                                        "interval, or the projected empty time − the near-empty "
                                        "margin (the earlier wins)")
    urgency: Urgency | None = Field(
        default=None, description="scheduling's judgement as of the answer, for a scheduled "
                                  "appointment (else null): overdue (due_at past), due_today "
                                  "(later on the same UTC day), due_soon (within "
                                  "HAI_DUE_SOON_HOURS) or later")
    near_empty: bool = Field(
        default=False, description="scheduled, and projected_empty_at lies within "
                                   "HAI_NEAR_EMPTY_HOURS of the answer (or is past)")


class AppointmentBook(RequestModel):
    model_config = ConfigDict(extra="forbid")

    scheduled_for: AwareDatetime


class RefillCreate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    pump_serial: Code
    performed_at: AwareDatetime
    residual_volume_ml: float = Field(ge=0, le=1000)
    fill_volume_ml: float = Field(gt=0, le=1000)
    fill_type: FillType
    appointment_id: Key | None = None
    delivery_id: Key | None = None
    notes: Notes | None = None


class RefillRead(_Read):
    id: str
    pump_serial: str
    patient_mrn: str
    center: str
    therapy_id: str | None
    performed_at: datetime
    residual_volume_ml: float
    fill_volume_ml: float
    fill_type: FillType
    appointment_id: str | None
    delivery_id: str | None
    notes: str | None
    elapsed_days: float | None
    measured_flow_ml_per_day: float | None
    expected_flow_ml_per_day: float
    flow_deviation_pct: float | None
    outside_window: bool
    projected_empty_at: datetime | None
    recorded_by: str
    created_at: datetime
    next_appointment: AppointmentRead | None = None
    status: RefillStatus = RefillStatus.RECORDED
    voided_by: str | None = None
    voided_at: datetime | None = None
    void_reason: str | None = None
    flow_abnormal: bool | None = Field(
        default=None, description="|flow_deviation_pct| above flow_warning_pct; null without a "
                                  "measured flow (a first fill)")
    flow_warning_pct: float | None = Field(
        default=None, description="the ±band (%) flow_abnormal was judged by (HAI_FLOW_WARNING_PCT)")


class RefillVoid(RequestModel):
    """`POST /v1/refills/{id}/entered-in-error`: why the record is wrong."""

    model_config = ConfigDict(extra="forbid")

    reason: Paragraph

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank: say why the record is wrong")
        return value.strip()


class FlowReading(BaseModel):
    refill_id: str
    performed_at: datetime
    elapsed_days: float
    residual_volume_ml: float
    measured_flow_ml_per_day: float
    expected_flow_ml_per_day: float
    flow_deviation_pct: float
    flow_abnormal: bool = Field(description="|flow_deviation_pct| above flow_warning_pct")
    flow_warning_pct: float = Field(description="the ±band (%) flow_abnormal was judged by "
                                                "(HAI_FLOW_WARNING_PCT)")


class FlowProjection(BaseModel):
    """The least-squares trend of the pump's last readings and the next reading it predicts
    (DOMAIN.md, Flow surveillance)."""

    readings: int = Field(description="the last readings the line goes through")
    slope_pct_per_day: float
    slope_se_pct_per_day: float = Field(description="the slope's standard error")
    last_at: datetime
    last_deviation_pct: float
    predicted_at: datetime = Field(description="the last reading + the readings' mean interval")
    predicted_deviation_pct: float
    prediction_se_pct: float = Field(description="the standard error of a new reading there")
    predicted_flow_ml_per_day: float
    band_pct: float = Field(description="the ±band (HAI_FLOW_WARNING_PCT)")
    crossing: bool = Field(description="the prediction leaves the band while the last reading "
                                       "is inside it, and the slope counts (`flow_trend` alert)")


class FlowReadingsPage(Page[FlowReading]):
    """A page of the flow series, and the trend of the pump's last readings (null below 3)."""

    trend: FlowProjection | None = None


class DeliveryHistoryRead(BaseModel):
    at: datetime
    status: DeliveryStatus
    reason: str | None = None
    applied: bool = True


class DeliveryRead(BaseModel):
    id: str
    appointment_id: str
    therapy_id: str
    patient_mrn: str
    pump_serial: str
    center: str
    needed_by: datetime
    status: DeliveryStatus
    drugs: list[dict[str, Any]]
    fill_volume_ml: float | None = None
    diluent: str | None = None
    lot: str | None = None
    beyond_use_at: datetime | None = None
    administered_at: datetime | None = Field(
        default=None, description="performed_at of the chemo fill that used this order")
    refill_id: str | None = Field(default=None, description="the chemo fill that used this order")
    created_at: datetime
    updated_at: datetime
    history: list[DeliveryHistoryRead]


class DeliveryStatusIn(RequestModel):
    """`POST /v1/deliveries/{id}/status`: the HTTP twin of the pharmacy's status message."""

    model_config = ConfigDict(extra="forbid")

    status: OrderStatus
    at: AwareDatetime
    reason: Notes | None = None
    lot: PharmacyLot | None = None
    beyond_use_at: AwareDatetime | None = None


# ---- centre settings (CONTRACT.md, Centre settings)

@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _iana_zone(value: str) -> str:
    if value not in _zones():
        raise PydanticCustomError("time_zone", "must be an IANA time zone, such as Europe/Paris")
    return value


TimeZoneName = Annotated[str, StringConstraints(min_length=1, max_length=64),
                         AfterValidator(_iana_zone)]


class CenterSettingsUpdate(RequestModel):
    """A centre's own settings, replaced whole: a field left out or null falls back to the
    system default."""

    time_zone: TimeZoneName | None = None
    refill_interval_days: int | None = Field(default=None, ge=2, le=90)
    refill_window_days: int | None = Field(default=None, ge=0, le=14)
    due_soon_hours: int | None = Field(default=None, ge=1, le=336)
    near_empty_hours: int | None = Field(default=None, ge=1, le=336)
    flow_warning_pct: float | None = Field(default=None, gt=0, le=100)
    flow_critical_pct: float | None = Field(default=None, gt=0, le=200)
    escalation_delay_seconds: int | None = Field(default=None, ge=30, le=86_400)
    ack_timeout_seconds: int | None = Field(default=None, ge=30, le=86_400)


class CenterSettingRead(BaseModel):
    """One effective setting: its value, `center` or `default`, and the default's variable
    and source (DOMAIN.md)."""

    value: Any
    source: SettingSource
    default: Any
    default_setting: str
    default_source: str


class CenterSettingsRead(BaseModel):
    center: str
    version: int  # 0: never set
    updated_by: str | None = None
    updated_at: datetime | None = None
    settings: dict[str, CenterSettingRead]
