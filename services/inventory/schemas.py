"""Inventory's request and response shapes (CONTRACT.md, Inventory)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from services.inventory.lifecycle import PumpStatus
from shared.contracts.inventory import RecalledImplant
from shared.schemas import RequestModel

# printable ASCII without '/' (a serial is a path segment), as GS1 AI 21 allows it otherwise
Serial = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64,
                                          pattern=r"^[!-.0-~]+$")]
Text200 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
Lot = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Mrn = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
FlowMlPerDay = Annotated[float, Field(gt=0, le=100)]


class PumpModelRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    manufacturer: str
    name: str
    gtin: str
    reservoir_ml: float
    nominal_flow_ml_per_day: float
    demo: bool = False
    notes: str | None = None


class PumpModelCreate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    code: Code
    manufacturer: Text200
    name: Text200
    gtin: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\d{8}$|^\d{12,14}$")]
    reservoir_ml: Annotated[float, Field(gt=0, le=1000)]
    nominal_flow_ml_per_day: FlowMlPerDay
    notes: Annotated[str | None, Field(max_length=2000)] = None


class PumpCreate(RequestModel):
    """Either `udi`, or `serial_number, model_code, lot_number, expiry_date` (checked in service)."""

    model_config = ConfigDict(extra="forbid")

    udi: Annotated[str | None, Field(min_length=1, max_length=500)] = None
    serial_number: Serial | None = None
    model_code: Code | None = None
    lot_number: Lot | None = None
    expiry_date: date | None = None
    labeled_flow_ml_per_day: FlowMlPerDay | None = None
    location: Text200 | None = None


class PumpRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    serial_number: str
    model_code: str
    gtin: str | None
    lot_number: str | None
    expiry_date: date
    reservoir_ml: float
    labeled_flow_ml_per_day: float
    status: PumpStatus
    location: str | None
    patient_mrn: str | None
    implanted_at: datetime | None
    explanted_at: datetime | None
    created_at: datetime
    updated_at: datetime
    center: str | None = None
    surgeon: str | None = None
    explant_reason: str | None = None


class PumpFilters(BaseModel):
    status: PumpStatus | None = None
    model_code: str | None = None
    lot_number: str | None = None
    patient_mrn: str | None = None
    expiring_before: date | None = None


class ImplantRequest(RequestModel):
    model_config = ConfigDict(extra="forbid")

    patient_mrn: Mrn
    implanted_at: AwareDatetime
    center: Text200
    surgeon: Text200 | None = None


class ExplantRequest(RequestModel):
    model_config = ConfigDict(extra="forbid")

    explanted_at: AwareDatetime | None = Field(default=None, description="default: now")
    reason: Reason


class ReasonRequest(RequestModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason


class ReleaseRequest(RequestModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason | None = None


class HistoryEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    actor: str
    action: str
    from_status: PumpStatus | None
    to_status: PumpStatus
    details: dict[str, Any]


class RecallCreate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    model_code: Code
    lot_numbers: Annotated[list[Lot], Field(min_length=1, max_length=1000)]
    reason: Reason


class RecallRead(BaseModel):
    recall_id: str
    model_code: str
    lot_numbers: list[str]
    reason: str
    issued_at: datetime
    issued_by: str
    quarantined: list[str]
    implanted: list[RecalledImplant]
    already_quarantined: list[str] = Field(default_factory=list)
