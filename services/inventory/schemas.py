"""Inventory's request and response shapes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class PumpModelRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    manufacturer: str
    name: str
    gtin: str
    reservoir_ml: float
    nominal_flow_ml_per_day: float
