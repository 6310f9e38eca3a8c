"""Inventory's tables (its own database): pump models, pumps, device history, recalls."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, Float, ForeignKey, Index, MetaData, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.contracts.vocabulary import PumpStatus
from shared.db import NAMING_CONVENTION, BigIntPK, UTCDateTime, define_platform_tables
from shared.scoping import by_center, by_parent, scope_rows

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
    demo: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Pump(Base):
    __tablename__ = "pumps"

    serial_number: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_code: Mapped[str] = mapped_column(ForeignKey("pump_models.code"))
    gtin: Mapped[str | None] = mapped_column(String(14), nullable=True)
    lot_number: Mapped[str | None] = mapped_column(String(64), nullable=True)
    expiry_date: Mapped[date] = mapped_column(Date)
    reservoir_ml: Mapped[float] = mapped_column(Float)
    labeled_flow_ml_per_day: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(20))
    location: Mapped[str | None] = mapped_column(String(200), nullable=True)
    patient_mrn: Mapped[str | None] = mapped_column(String(64), nullable=True)
    center: Mapped[str | None] = mapped_column(String(100), nullable=True)
    surgeon: Mapped[str | None] = mapped_column(String(200), nullable=True)
    implanted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    explanted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    explant_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # the UDI as the scanner read it (raw GS1 element string or Digital Link), when it was scanned
    udi_aidc: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        # the list filters, each ending in the keyset (serial) so a page is an index range
        Index("ix_pumps_status_model_serial", "status", "model_code", "serial_number"),
        Index("ix_pumps_model_lot_serial", "model_code", "lot_number", "serial_number"),
        Index("ix_pumps_lot_serial", "lot_number", "serial_number"),
        Index("ix_pumps_patient_serial", "patient_mrn", "serial_number"),
        Index("ix_pumps_expiry_serial", "expiry_date", "serial_number"),
        # one implanted pump per patient, even under concurrent implants
        Index("uq_pumps_one_implanted_per_patient", "patient_mrn", unique=True,
              postgresql_where=text(f"status = '{PumpStatus.IMPLANTED}'"),
              sqlite_where=text(f"status = '{PumpStatus.IMPLANTED}'")),
    )


class DeviceHistory(Base):
    __tablename__ = "device_history"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    serial_number: Mapped[str] = mapped_column(ForeignKey("pumps.serial_number"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50))
    from_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    to_status: Mapped[str] = mapped_column(String(20))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (Index("ix_device_history_serial_id", "serial_number", "id"),)


class Recall(Base):
    __tablename__ = "recalls"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_code: Mapped[str] = mapped_column(ForeignKey("pump_models.code"))
    lot_numbers: Mapped[list[str]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    issued_by: Mapped[str] = mapped_column(String(200))
    quarantined: Mapped[list[str]] = mapped_column(JSON)
    implanted: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    already_quarantined: Mapped[list[str]] = mapped_column(JSON)

    __table_args__ = (Index("ix_recalls_issued_id", "issued_at", "id"),)


# centre scoping (shared/scoping.py, CONTRACT.md): a pump belongs to the centre it was implanted
# at, and keeps it after explant; a pump never implanted (stock, quarantined, retired from
# stock) is consortium stock that every centre's staff sees. Its history goes with it.
scope_rows(Pump, by_center(Pump.center, or_unassigned=True))
scope_rows(DeviceHistory, by_parent(DeviceHistory.serial_number, Pump.serial_number,
                                    by_center(Pump.center, or_unassigned=True)))
