"""Inventory's tables (its own database): pump models, pumps, device history, recalls."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import NAMING_CONVENTION, UTCDateTime, define_platform_tables

metadata = MetaData(naming_convention=NAMING_CONVENTION)
platform = define_platform_tables(metadata)


class Base(DeclarativeBase):
    metadata = metadata


class PumpModel(Base):
    __tablename__ = "pump_models"

    code: Mapped[str] = mapped_column(String(50), primary_key=True)
    manufacturer: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    gtin: Mapped[str] = mapped_column(String(14), unique=True)
    reservoir_ml: Mapped[float] = mapped_column(Float)
    nominal_flow_ml_per_day: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
