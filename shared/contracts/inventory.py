"""Events inventory publishes (CONTRACT.md, Events)."""

from __future__ import annotations

from datetime import date

from pydantic import AwareDatetime, BaseModel, ConfigDict

from shared.contracts.vocabulary import PumpStatus


class PumpData(BaseModel):
    """A pump, as `hai.inventory.pump.registered` / `.implanted` carry it (center on implant)."""

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


class PumpRegisteredData(PumpData):
    """`hai.inventory.pump.registered`: a pump received into stock."""


class PumpImplantedData(PumpData):
    """`hai.inventory.pump.implanted`: with `patient_mrn`, `center`, `reservoir_ml` and
    `labeled_flow_ml_per_day`, from which scheduling keeps its read model of implanted pumps."""


class PumpExplantedData(BaseModel):
    """`hai.inventory.pump.explanted`."""

    model_config = ConfigDict(extra="allow")

    serial_number: str
    patient_mrn: str
    explanted_at: AwareDatetime
    reason: str
    center: str | None = None


class PumpStatusChangedData(BaseModel):
    """`hai.inventory.pump.status_changed`: quarantine, release, retire (a recall names itself)."""

    model_config = ConfigDict(extra="allow")

    serial_number: str
    from_status: PumpStatus
    to_status: PumpStatus
    reason: str | None = None
    recall_id: str | None = None
    center: str | None = None  # added: the pump's centre once implanted (stock has none)


class RecalledImplant(BaseModel):
    serial_number: str
    patient_mrn: str
    center: str | None = None


class RecallIssuedData(BaseModel):
    """`hai.inventory.recall.issued`: stock of the lots quarantined, implanted ones named."""

    model_config = ConfigDict(extra="allow")

    recall_id: str
    model_code: str
    lot_numbers: list[str]
    reason: str
    quarantined: list[str]
    implanted: list[RecalledImplant]
    already_quarantined: list[str] = []
