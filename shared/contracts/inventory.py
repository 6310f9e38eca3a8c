"""Events inventory publishes (CONTRACT.md, Events)."""

from __future__ import annotations

from datetime import date

from pydantic import AwareDatetime, BaseModel, ConfigDict

PumpStatus = str  # in_stock | implanted | explanted | quarantined | retired


class PumpData(BaseModel):
    """`hai.inventory.pump.registered` / `.implanted` data: the pump (center on implant)."""

    model_config = ConfigDict(extra="allow")

    serial_number: str
    model_code: str
    gtin: str | None = None
    lot_number: str | None = None
    expiry_date: date | None = None
    reservoir_ml: float
    labeled_flow_ml_per_day: float
    status: PumpStatus
    location: str | None = None
    patient_mrn: str | None = None
    center: str | None = None
    implanted_at: AwareDatetime | None = None
    explanted_at: AwareDatetime | None = None
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None
    surgeon: str | None = None


class PumpExplantedData(BaseModel):
    model_config = ConfigDict(extra="allow")

    serial_number: str
    patient_mrn: str
    explanted_at: AwareDatetime
    reason: str
    center: str | None = None


class PumpStatusChangedData(BaseModel):
    model_config = ConfigDict(extra="allow")

    serial_number: str
    from_status: str
    to_status: str
    reason: str | None = None
    recall_id: str | None = None


class RecalledImplant(BaseModel):
    serial_number: str
    patient_mrn: str
    center: str | None = None


class RecallIssuedData(BaseModel):
    model_config = ConfigDict(extra="allow")

    recall_id: str
    model_code: str
    lot_numbers: list[str]
    reason: str
    quarantined: list[str]
    implanted: list[RecalledImplant]
    already_quarantined: list[str] = []
