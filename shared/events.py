"""The CloudEvents 1.0 envelope (structured JSON mode) and the event types of the contract."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

CONTENT_TYPE = "application/cloudevents+json"

EVENTS_EXCHANGE = "hai.events"
PHARMACY_EXCHANGE = "hai.pharmacy"


class EventType:
    """Every event type of CONTRACT.md, Events and Pharmacy queue."""

    PUMP_REGISTERED = "hai.inventory.pump.registered"
    PUMP_IMPLANTED = "hai.inventory.pump.implanted"
    PUMP_EXPLANTED = "hai.inventory.pump.explanted"
    PUMP_STATUS_CHANGED = "hai.inventory.pump.status_changed"
    RECALL_ISSUED = "hai.inventory.recall.issued"
    APPOINTMENT_SCHEDULED = "hai.scheduling.appointment.scheduled"
    REFILL_DUE_SOON = "hai.scheduling.refill.due_soon"
    REFILL_OVERDUE = "hai.scheduling.refill.overdue"
    REFILL_COMPLETED = "hai.scheduling.refill.completed"
    FLOW_RECORDED = "hai.scheduling.flow.recorded"
    DELIVERY_UPDATED = "hai.scheduling.delivery.updated"
    DELIVERY_LATE = "hai.scheduling.delivery.late"
    SWEEP_COMPLETED = "hai.scheduling.sweep.completed"
    RESERVOIR_NEAR_EMPTY = "hai.scheduling.reservoir.near_empty"  # added to the contract
    REFILL_VOIDED = "hai.scheduling.refill.voided"
    ORDER_REFUSED = "hai.scheduling.order.refused"  # added to the contract
    ALERT_RAISED = "hai.alerts.alert.raised"
    ALERT_ACKNOWLEDGED = "hai.alerts.alert.acknowledged"
    ALERT_RESOLVED = "hai.alerts.alert.resolved"
    PAGE_SENT = "hai.alerts.page.sent"
    PAGE_FAILED = "hai.alerts.page.failed"
    ORDER_REQUESTED = "hai.pharmacy.order.requested"
    ORDER_CANCELLED = "hai.pharmacy.order.cancelled"
    ORDER_STATUS = "hai.pharmacy.order.status"


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event; `data` is the typed payload dumped to JSON."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"]
    id: str = Field(min_length=1, max_length=64)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1, max_length=200)
    time: AwareDatetime | None = None
    subject: str | None = None
    datacontenttype: str | None = "application/json"
    data: Any = None

    @field_validator("time")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    @classmethod
    def create(
        cls,
        *,
        source: str,
        type: str,
        data: Any,
        subject: str | None = None,
        time: datetime | None = None,
        id: str | None = None,
        traceparent: str | None = None,
    ) -> CloudEvent:
        """Build an event; pydantic payloads are dumped in JSON mode.

        Built without validation (every field is ours and well-formed by construction; the
        time is made UTC here): this runs for every event every service writes."""
        if isinstance(data, BaseModel):
            data = data.model_dump(mode="json")
        if not source or not type:
            raise ValueError("an event needs a source and a type")
        if time is not None and time.tzinfo is None:
            raise ValueError("naive datetime refused: event times must be timezone-aware")
        # the CloudEvents distributed-tracing extension, only when a trace is under way
        extensions = {"traceparent": traceparent} if traceparent else {}
        return cls.model_construct(
            **extensions,  # type: ignore[arg-type]  # extension attributes (extra="allow")
            specversion="1.0",
            id=id or str(uuid.uuid4()),
            source=source,
            type=type,
            time=(time or datetime.now(UTC)).astimezone(UTC),
            subject=subject,
            datacontenttype="application/json",
            data=data,
        )

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()
