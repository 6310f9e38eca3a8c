"""The bridge's own tables (its own database): the orders it forwarded, the answers it took in."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import NAMING_CONVENTION, UTCDateTime, define_platform_tables

metadata = MetaData(naming_convention=NAMING_CONVENTION)
platform = define_platform_tables(metadata)


class Base(DeclarativeBase):
    metadata = metadata


class ForwardedOrder(Base):
    """An order (or its cancellation) the bridge sends to the pharmacy: written before the
    first send, so that the pharmacy's answer always finds it; `acked_at` once it said AA."""

    __tablename__ = "hl7_orders"

    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # NW (new order) or CA (cancellation), as in ORC-1 of the last RDE^O11 sent
    order_control: Mapped[str] = mapped_column(String(2))
    control_id: Mapped[str] = mapped_column(String(20))  # MSH-10 of that RDE^O11
    first_sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ReceivedAnswer(Base):
    """One answer of the pharmacy, by its sender and message control id: the same message
    twice publishes its status once."""

    __tablename__ = "hl7_answers"

    sender: Mapped[str] = mapped_column(String(200), primary_key=True)  # MSH-3^MSH-4
    control_id: Mapped[str] = mapped_column(String(200), primary_key=True)  # MSH-10
    order_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
