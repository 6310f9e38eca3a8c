"""The CloudEvents 1.0 envelope (structured JSON mode) and the contract's exchanges.

The event types and their payloads are in shared/contracts/ (vocabulary.EventType, registry)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from shared.contracts.vocabulary import EventType

__all__ = ["CONTENT_TYPE", "EVENTS_EXCHANGE", "PHARMACY_EXCHANGE", "CloudEvent", "EventType"]

CONTENT_TYPE = "application/cloudevents+json"

EVENTS_EXCHANGE = "hai.events"
PHARMACY_EXCHANGE = "hai.pharmacy"


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
