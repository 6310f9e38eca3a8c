"""Alerts's tables (its own database): alerts and their timeline, notifications, on-call, silences."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    and_,
    or_,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.contracts.vocabulary import AlertKind, AlertStatus
from shared.db import NAMING_CONVENTION, BigIntPK, UTCDateTime, define_platform_tables
from shared.scoping import ByScope, CenterScope, Rule, by_center, by_parent, scope_rows

metadata = MetaData(naming_convention=NAMING_CONVENTION)
platform = define_platform_tables(metadata)


class Base(DeclarativeBase):
    metadata = metadata


class Alert(Base):
    """One alert; at most one open (not resolved) per dedup_key."""

    __tablename__ = "alerts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    severity: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20))
    dedup_key: Mapped[str] = mapped_column(String(300))
    patient_mrn: Mapped[str | None] = mapped_column(String(100), nullable=True)
    pump_serial: Mapped[str | None] = mapped_column(String(100), nullable=True)
    center: Mapped[str | None] = mapped_column(String(100), nullable=True)
    summary: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    first_raised_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_raised_at: Mapped[datetime] = mapped_column(UTCDateTime)
    occurrences: Mapped[int] = mapped_column(Integer)
    acknowledged_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolution: Mapped[str | None] = mapped_column(Text, nullable=True)
    silenced_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # the paused therapy whose hold kept this alert from paging (null: not held by a pause)
    held_by_therapy: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # the highest on-call level paged so far (0: none)
    escalation_level: Mapped[int] = mapped_column(Integer)
    # when a still-firing critical alert pages its next level (null: no timed escalation due)
    next_escalation_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # when an acknowledged (or snoozed) alert not resolved by then fires again and pages level 1
    wake_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        Index("uq_alerts_open_dedup_key", "dedup_key", unique=True,
              postgresql_where=text(f"status <> '{AlertStatus.RESOLVED}'"),
              sqlite_where=text(f"status <> '{AlertStatus.RESOLVED}'")),
        Index("ix_alerts_listing", "first_raised_at", "id"),
        Index("ix_alerts_pump_open", "pump_serial", "status"),
        Index("ix_alerts_escalation_due", "next_escalation_at",
              postgresql_where=text("next_escalation_at IS NOT NULL"),
              sqlite_where=text("next_escalation_at IS NOT NULL")),
        Index("ix_alerts_wake_due", "wake_at",
              postgresql_where=text("wake_at IS NOT NULL"),
              sqlite_where=text("wake_at IS NOT NULL")),
        Index("ix_alerts_held_by_therapy", "held_by_therapy",
              postgresql_where=text("held_by_therapy IS NOT NULL"),
              sqlite_where=text("held_by_therapy IS NOT NULL")),
        Index("ix_alerts_silenced", "silenced_by",
              postgresql_where=text("silenced_by IS NOT NULL"),
              sqlite_where=text("silenced_by IS NOT NULL")),
    )


class AlertEvent(Base):
    """One entry of an alert's timeline: raised, repeated, paged, acknowledged, resolved..."""

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id"), index=True)
    # never loaded: it tells the unit of work to insert a new alert before its timeline, when
    # both are flushed together (a new alert is inserted once, with its entries and pages)
    alert: Mapped[Alert] = relationship(lazy="raise")
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)


# a sent page that stands for its message: a storm's message lists several pages, all sharing the
# first one's id as `message_id`; pages sent before messages were recorded have none
MESSAGES_SENT = "sent_at IS NOT NULL AND (message_id IS NULL OR message_id = id)"


class Notification(Base):
    """A page to one on-call member: pending → sending → sent | retrying → ... → failed."""

    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id"), index=True)
    alert: Mapped[Alert] = relationship(lazy="raise")  # never loaded: orders the flush (above)
    level: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(20))
    recipient: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # a worker's lease on a row it is sending: past it, another worker may take the row over
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    claim_token: Mapped[str | None] = mapped_column(String(36), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # the on-call table that planned the page: its secret signs a webhook page
    oncall_center: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # W3C traceparent of the work that planned the page (tracing on): the page joins its trace
    traceparent: Mapped[str | None] = mapped_column(String(55), nullable=True)
    # the member's other addresses, tried in order when the one before fails: [{channel, address}]
    fallbacks: Mapped[list[dict[str, str]] | None] = mapped_column(JSON, nullable=True)
    # which address took the page (0: `address`, n: fallbacks[n-1])
    sent_route: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # the recipient's read status, each when first known
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # the page message that carried it: several notifications of one recipient in a storm share one
    message_id: Mapped[str | None] = mapped_column(String(36), nullable=True)

    __table_args__ = (
        Index("ix_notifications_due", "status", "next_attempt_at"),
        Index("ix_notifications_listing", "created_at", "id"),
        Index("ix_notifications_recipient_sent", "recipient", "sent_at"),
        # the storm limit's count: each recipient's latest page messages, one row a message (its
        # first page, whose message is itself), read newest first (paging._rooms_left)
        Index("ix_notifications_messages_sent", "recipient", "channel", "address", "sent_at",
              postgresql_where=text(MESSAGES_SENT), sqlite_where=text(MESSAGES_SENT)),
    )


class OncallSchedule(Base):
    """The on-call of one center: escalation delay and levels of rotating members."""

    __tablename__ = "oncall_schedules"

    center: Mapped[str] = mapped_column(String(100), primary_key=True)
    escalation_delay_seconds: Mapped[int] = mapped_column(Integer)
    # an acknowledged alert not resolved after this long fires again (null: HAI_ACK_TIMEOUT_SECONDS)
    ack_timeout_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    levels: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(200))
    # signs the center's webhook pages (Standard Webhooks, `whsec_...`); never shown by a GET
    webhook_secret: Mapped[str | None] = mapped_column(String(120), nullable=True)


class CenterSettings(Base):
    """Alerts' copy of the centre settings it applies, from scheduling's
    `center.settings_changed` (null: the system default); `version` orders the events."""

    __tablename__ = "center_settings"

    center: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    flow_warning_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    flow_critical_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    escalation_delay_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ack_timeout_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Silence(Base):
    """A window during which matching alerts are recorded but not paged."""

    __tablename__ = "silences"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str | None] = mapped_column(String(50), nullable=True)
    pump_serial: Mapped[str | None] = mapped_column(String(100), nullable=True)
    center: Mapped[str | None] = mapped_column(String(100), nullable=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TherapyHold(Base):
    """Alerts' copy of a therapy's status, from scheduling's `therapy.status_changed`: while it
    is `paused`, some warnings of its pump are recorded but not paged (`rules.pause_holds`); `at` (the
    change's time) orders the events of one therapy: an older or repeated one changes nothing."""

    __tablename__ = "therapy_holds"

    therapy_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    pump_serial: Mapped[str] = mapped_column(String(100), index=True)
    patient_mrn: Mapped[str] = mapped_column(String(100))
    center: Mapped[str | None] = mapped_column(String(100), nullable=True)
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PatientTransfer(Base):
    """Where a transferred patient last moved (scheduling's `patient.center_changed`), and from
    where: `changed_at` orders the transfers of one patient (an older or repeated one changes
    nothing), and a fact that still names the centre the patient left is raised at the new one
    (an event written before the transfer, or by a service that has not heard of it yet)."""

    __tablename__ = "patient_transfers"

    patient_mrn: Mapped[str] = mapped_column(String(100), primary_key=True)
    center: Mapped[str] = mapped_column(String(100))
    from_center: Mapped[str] = mapped_column(String(100))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Heartbeat(Base):
    """When a source's heartbeat (scheduling's sweep.completed) was last heard."""

    __tablename__ = "heartbeats"

    source: Mapped[str] = mapped_column(String(50), primary_key=True)
    last_heard_at: Mapped[datetime] = mapped_column(UTCDateTime)


def _alert_rule_of(scope: CenterScope) -> Rule:
    """An alert of a visible centre, or a system alert (no centre and no patient, as
    `system_stale`), which every centre sees; a lot's flow drift (no centre either, but its
    pumps span centres) only with a lot-wide scope (biomed, admin)."""

    def rule(centers: list[str]) -> ColumnElement[bool]:
        system = and_(Alert.center.is_(None), Alert.patient_mrn.is_(None))
        if not scope.lot_wide:
            system = and_(system, Alert.kind.not_in(LOT_WIDE_KINDS))
        return or_(by_center(Alert.center)(centers), system)

    return rule


LOT_WIDE_KINDS = (AlertKind.LOT_FLOW_DRIFT,)


# centre scoping (shared/scoping.py, CONTRACT.md): an alert and what hangs off it (its timeline,
# its pages) by the alert's centre; an on-call table by its centre; a silence by its centre
# matcher (one without is consortium-wide, and every centre sees it)
scope_rows(Alert, ByScope(_alert_rule_of))
scope_rows(AlertEvent, ByScope(lambda scope: by_parent(AlertEvent.alert_id, Alert.id,
                                                      _alert_rule_of(scope))))
scope_rows(Notification, ByScope(lambda scope: by_parent(Notification.alert_id, Alert.id,
                                                        _alert_rule_of(scope))))
scope_rows(OncallSchedule, by_center(OncallSchedule.center))
scope_rows(Silence, by_center(Silence.center, or_unassigned=True))
scope_rows(TherapyHold, by_center(TherapyHold.center))
scope_rows(PatientTransfer, by_center(PatientTransfer.center))
