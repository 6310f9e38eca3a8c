"""Inventory's request and response shapes (CONTRACT.md, Inventory)."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from shared.contracts.inventory import RecalledImplant
from shared.contracts.vocabulary import PumpStatus
from shared.schemas import RequestModel
from shared.text import GS, Centre, Line, ModelCode, Paragraph, text_rules
from shared.text import Code as Identifier

# printable ASCII without spaces, '/' or '\\' (a serial is a path segment), no leading dot
Serial = Identifier
Text200 = Line
Code = ModelCode
Lot = Identifier
Mrn = Identifier
Reason = Paragraph
FlowMlPerDay = Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]
# a GS1 element string: the raw form separates its elements with GS, the one control kept
Udi = Annotated[str, StringConstraints(min_length=1, max_length=500),
                text_rules(keep=frozenset({GS}))]
_GTIN = re.compile(r"[0-9]{8}|[0-9]{12,14}")


def _gtin_digits(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        if not _GTIN.fullmatch(value):
            raise PydanticCustomError("gtin_invalid", "must be 8, 12, 13 or 14 digits")
    return value


Gtin = Annotated[str, StringConstraints(pattern=r"^[0-9]{8}$|^[0-9]{12,14}$"),
                 BeforeValidator(_gtin_digits)]


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
    gtin: Gtin
    reservoir_ml: Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)]
    nominal_flow_ml_per_day: FlowMlPerDay
    notes: Paragraph | None = None


class PumpCreate(RequestModel):
    """Either `udi`, or `serial_number, model_code, lot_number, expiry_date` (checked in service)."""

    model_config = ConfigDict(extra="forbid")

    udi: Udi | None = None
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
    center: Centre
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
