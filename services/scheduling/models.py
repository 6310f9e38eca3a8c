"""Scheduling's tables (its own database): patients, the implanted-pump read model, therapies,
appointments, refills, deliveries and their history, and the sweep record."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, Float, ForeignKey, Index, Integer, MetaData, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.contracts.vocabulary import (
    OPEN_DELIVERY_STATUSES,
    OPEN_THERAPY_STATUSES,
    AppointmentStatus,
    DueBasis,
    FillType,
    RefillStatus,
)
from shared.db import NAMING_CONVENTION, BigIntPK, UTCDateTime, define_platform_tables
from shared.scoping import by_center, by_parent, scope_rows

metadata = MetaData(naming_convention=NAMING_CONVENTION)
platform = define_platform_tables(metadata)

def sql_values(*values: str) -> str:
    """Values quoted for SQL (`'a', 'b'`): the partial indexes' conditions, from the vocabulary."""
    return ", ".join(f"'{v}'" for v in values)


# at most one open therapy per pump and per patient, kept by the database (two requests at the
# same moment would both pass a read-then-write check and send two chemo orders)
OPEN_THERAPY_WHERE = f"status IN ({sql_values(*OPEN_THERAPY_STATUSES)})"
SCHEDULED_WHERE = f"status = {sql_values(AppointmentStatus.SCHEDULED)}"
OPEN_DELIVERY_WHERE = f"status IN ({sql_values(*OPEN_DELIVERY_STATUSES)})"
ONE_OPEN_THERAPY_PER_PUMP = "uq_therapies_open_pump"
ONE_OPEN_THERAPY_PER_PATIENT = "uq_therapies_open_patient"


class Base(DeclarativeBase):
    metadata = metadata


class Patient(Base):
    __tablename__ = "patients"

    mrn: Mapped[str] = mapped_column(String(64), primary_key=True)
    given_name: Mapped[str] = mapped_column(String(200))
    family_name: Mapped[str] = mapped_column(String(200))
    birth_date: Mapped[date] = mapped_column(Date)
    weight_kg: Mapped[float] = mapped_column(Float)
    height_cm: Mapped[float | None] = mapped_column(Float, nullable=True)
    sex: Mapped[str | None] = mapped_column(String(10), nullable=True)
    center: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ImplantedPump(Base):
    """What scheduling knows of a pump, learnt from inventory's events only."""

    __tablename__ = "implanted_pumps"

    serial_number: Mapped[str] = mapped_column(String(100), primary_key=True)
    patient_mrn: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    center: Mapped[str | None] = mapped_column(String(100), nullable=True)
    model_code: Mapped[str] = mapped_column(String(50))
    lot_number: Mapped[str | None] = mapped_column(String(100), nullable=True)
    reservoir_ml: Mapped[float] = mapped_column(Float)
    labeled_flow_ml_per_day: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(20))  # implanted | explanted | other inventory states
    implanted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    explanted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Therapy(Base):
    __tablename__ = "therapies"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_mrn: Mapped[str] = mapped_column(ForeignKey("patients.mrn"), index=True)
    pump_serial: Mapped[str] = mapped_column(String(100), index=True)
    regimen: Mapped[str] = mapped_column(String(30))  # fudr_alternating | saline_maintenance
    status: Mapped[str] = mapped_column(String(20))  # active | paused | stopped
    start_on: Mapped[date] = mapped_column(Date)
    refill_interval_days: Mapped[int] = mapped_column(Integer)
    fudr_mg_per_kg_day: Mapped[float | None] = mapped_column(Float, nullable=True)
    dosing_weight: Mapped[str] = mapped_column(String(10))  # actual | adjusted
    dexamethasone_mg: Mapped[float | None] = mapped_column(Float, nullable=True)
    heparin_units: Mapped[float | None] = mapped_column(Float, nullable=True)
    fill_volume_ml: Mapped[float | None] = mapped_column(Float, nullable=True)
    dose_override_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    dose_override_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index(ONE_OPEN_THERAPY_PER_PUMP, "pump_serial", unique=True,
              postgresql_where=text(OPEN_THERAPY_WHERE), sqlite_where=text(OPEN_THERAPY_WHERE)),
        Index(ONE_OPEN_THERAPY_PER_PATIENT, "patient_mrn", unique=True,
              postgresql_where=text(OPEN_THERAPY_WHERE), sqlite_where=text(OPEN_THERAPY_WHERE)),
    )


class Appointment(Base):
    """A refill appointment; the *_announced_at flags make each sweep fact go out once."""

    __tablename__ = "appointments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    therapy_id: Mapped[str] = mapped_column(ForeignKey("therapies.id"), index=True)
    patient_mrn: Mapped[str] = mapped_column(String(64), index=True)
    center: Mapped[str] = mapped_column(String(100))
    pump_serial: Mapped[str] = mapped_column(String(100), index=True)
    fill_type: Mapped[str] = mapped_column(String(10))  # FillType
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    scheduled_for: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(20))  # AppointmentStatus
    projected_empty_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    delivery_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    refill_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # which rule set due_at (flow.next_due)
    due_basis: Mapped[str] = mapped_column(String(20), default=DueBasis.INTERVAL.value,
                                           server_default=DueBasis.INTERVAL.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_soon_announced_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    overdue_announced_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    near_empty_announced_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # why the last try at its pharmacy order was refused (told once per reason); null once sent
    order_refused_reason: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        Index("ix_appointments_due", "due_at", "id"),
        # one centre's worklist: its page read straight off the index, whatever the centre's size
        Index("ix_appointments_center_due", "center", "due_at", "id"),
        # partial indexes: a sweep reads only the rows still waiting for that fact
        Index("ix_appointments_due_soon_todo", "due_at",
              postgresql_where=text(f"{SCHEDULED_WHERE} AND due_soon_announced_at IS NULL"),
              sqlite_where=text(f"{SCHEDULED_WHERE} AND due_soon_announced_at IS NULL")),
        Index("ix_appointments_overdue_todo", "due_at",
              postgresql_where=text(f"{SCHEDULED_WHERE} AND overdue_announced_at IS NULL"),
              sqlite_where=text(f"{SCHEDULED_WHERE} AND overdue_announced_at IS NULL")),
        Index("ix_appointments_near_empty_todo", "projected_empty_at",
              postgresql_where=text(f"{SCHEDULED_WHERE} AND near_empty_announced_at IS NULL "
                                    "AND projected_empty_at IS NOT NULL"),
              sqlite_where=text(f"{SCHEDULED_WHERE} AND near_empty_announced_at IS NULL "
                                "AND projected_empty_at IS NOT NULL")),
        Index("ix_appointments_order_todo", "due_at",
              postgresql_where=text(f"{SCHEDULED_WHERE} AND fill_type = "
                                    f"{sql_values(FillType.CHEMO)} AND delivery_id IS NULL"),
              sqlite_where=text(f"{SCHEDULED_WHERE} AND fill_type = "
                                f"{sql_values(FillType.CHEMO)} AND delivery_id IS NULL")),
    )


# a timestamp's UTC month (PostgreSQL): the registry groups by it, and an index holds it
REPORT_MONTH_SQL = "date_trunc('month', timezone('UTC', performed_at))"


class Refill(Base):
    __tablename__ = "refills"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    pump_serial: Mapped[str] = mapped_column(String(100))
    patient_mrn: Mapped[str] = mapped_column(String(64), index=True)
    center: Mapped[str] = mapped_column(String(100))
    therapy_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    appointment_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # the due time of the appointment it completed, copied when recorded: the registry's hours
    # overdue are read from the refills alone (no join of a million appointments)
    appointment_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    delivery_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    performed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    residual_volume_ml: Mapped[float] = mapped_column(Float)
    fill_volume_ml: Mapped[float] = mapped_column(Float)
    fill_type: Mapped[str] = mapped_column(String(10))
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    elapsed_days: Mapped[float | None] = mapped_column(Float, nullable=True)
    measured_flow_ml_per_day: Mapped[float | None] = mapped_column(Float, nullable=True)
    expected_flow_ml_per_day: Mapped[float] = mapped_column(Float)
    flow_deviation_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    outside_window: Mapped[bool] = mapped_column(Boolean)
    projected_empty_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    next_appointment_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    recorded_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # recorded | entered_in_error: a record is never deleted; a voided one leaves every figure
    status: Mapped[str] = mapped_column(String(20), default=RefillStatus.RECORDED.value,
                                        server_default=text(sql_values(RefillStatus.RECORDED)))
    voided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    void_reason: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        Index("ix_refills_pump_performed", "pump_serial", "performed_at", "id"),
        # the FHIR Observation search's keysets: per patient, and over every refill
        Index("ix_refills_patient_performed", "patient_mrn", "performed_at", "id"),
        Index("ix_refills_performed", "performed_at", "id"),
        # the registry's one pass (reports.py): a recorded refill's month and centre in order,
        # with every figure it counts, read without the table (PostgreSQL only)
        Index("ix_refills_month_center", text(REPORT_MONTH_SQL), "center",
              postgresql_include=["performed_at", "appointment_due_at", "outside_window",
                                  "flow_deviation_pct"],
              postgresql_where=text(f"status = {sql_values(RefillStatus.RECORDED)}"),
              ).ddl_if(dialect="postgresql"),
        # one recorded refill per appointment; a voided one gives its appointment back
        Index("uq_refills_appointment_recorded", "appointment_id", unique=True,
              postgresql_where=text(f"status = {sql_values(RefillStatus.RECORDED)}"),
              sqlite_where=text(f"status = {sql_values(RefillStatus.RECORDED)}")),
    )


class Delivery(Base):
    """A drug delivery order; its `id` is the pharmacy's `order_id`."""

    __tablename__ = "deliveries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    appointment_id: Mapped[str] = mapped_column(String(36), index=True)
    therapy_id: Mapped[str] = mapped_column(String(36), index=True)
    patient_mrn: Mapped[str] = mapped_column(String(64))
    pump_serial: Mapped[str] = mapped_column(String(100))
    center: Mapped[str] = mapped_column(String(100))
    needed_by: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20))
    drugs: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    order: Mapped[dict[str, Any]] = mapped_column(JSON)  # the order as sent (for the cancellation)
    lot: Mapped[str | None] = mapped_column(String(100), nullable=True)
    beyond_use_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # the chemo fill that used this order: when (its performed_at) and which refill
    administered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    refill_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    late_announced_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        Index("ix_deliveries_status_id", "status", "id"),
        Index("ix_deliveries_late_todo", "needed_by",
              postgresql_where=text(f"late_announced_at IS NULL AND {OPEN_DELIVERY_WHERE}"),
              sqlite_where=text(f"late_announced_at IS NULL AND {OPEN_DELIVERY_WHERE}")),
    )


class DeliveryEvent(Base):
    """One line of a delivery's history; `applied` is false for a late status kept for the record."""

    __tablename__ = "delivery_history"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("deliveries.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    applied: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(20))  # scheduling | queue | http
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class FlowPumpStats(Base):
    """A pump's running sums of flow deviations (flow surveillance), under the lot it was in."""

    __tablename__ = "flow_pump_stats"

    serial_number: Mapped[str] = mapped_column(String(100), primary_key=True)
    model_code: Mapped[str] = mapped_column(String(50))
    lot_number: Mapped[str] = mapped_column(String(100))
    readings: Mapped[int] = mapped_column(Integer)
    sum_deviation_pct: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_flow_pump_stats_lot", "model_code", "lot_number"),)


class FlowLotStats(Base):
    """A lot's running sums over its pumps' mean deviations (surveillance.GroupSums), and whether
    its last test said it drifts."""

    __tablename__ = "flow_lot_stats"

    model_code: Mapped[str] = mapped_column(String(50), primary_key=True)
    lot_number: Mapped[str] = mapped_column(String(100), primary_key=True)
    pumps: Mapped[int] = mapped_column(Integer)
    sum_mean_pct: Mapped[float] = mapped_column(Float)
    sum_mean_sq: Mapped[float] = mapped_column(Float)
    readings: Mapped[int] = mapped_column(Integer)
    drifting: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CenterSettings(Base):
    """A centre's own settings (null: the system default); changes are audited and announced."""

    __tablename__ = "center_settings"

    center: Mapped[str] = mapped_column(String(100), primary_key=True)
    time_zone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    refill_interval_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    refill_window_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    due_soon_hours: Mapped[int | None] = mapped_column(Integer, nullable=True)
    near_empty_hours: Mapped[int | None] = mapped_column(Integer, nullable=True)
    flow_warning_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    flow_critical_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    escalation_delay_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ack_timeout_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReportSnapshot(Base):
    """A registry report as last computed (the whole consortium, one period): the API answers
    from it while younger than HAI_REPORT_MAX_AGE_SECONDS; a job keeps the default one fresh."""

    __tablename__ = "report_snapshots"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)


class SweepRun(Base):
    """One completed sweep (any worker): what `/readyz` reads to spot a dead scheduler."""

    __tablename__ = "sweep_runs"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ok: Mapped[bool] = mapped_column(Boolean)
    jobs: Mapped[list[dict[str, Any]]] = mapped_column(JSON)



# centre scoping (shared/scoping.py, CONTRACT.md): every row of a patient belongs to the
# patient's centre; a therapy by its patient, a delivery's history by its delivery
scope_rows(Patient, by_center(Patient.center))
scope_rows(ImplantedPump, by_center(ImplantedPump.center))
scope_rows(Therapy, by_parent(Therapy.patient_mrn, Patient.mrn, by_center(Patient.center)))
scope_rows(Appointment, by_center(Appointment.center))
scope_rows(Refill, by_center(Refill.center))
scope_rows(Delivery, by_center(Delivery.center))
scope_rows(DeliveryEvent, by_parent(DeliveryEvent.delivery_id, Delivery.id,
                                    by_center(Delivery.center)))
__all__ = ["Appointment", "Base", "CenterSettings", "Delivery", "DeliveryEvent", "FlowLotStats",
           "FlowPumpStats", "ImplantedPump", "Patient", "Refill", "ReportSnapshot", "SweepRun",
           "Therapy", "metadata", "platform"]
