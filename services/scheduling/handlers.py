"""Scheduling's consumers: inventory's pump events (the implanted-pump read model) and the
pharmacy's order statuses. Handlers run in the consumer's transaction and never commit."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from services.scheduling import deliveries, pumps
from shared.contracts.inventory import PumpData, PumpExplantedData, PumpStatusChangedData
from shared.contracts.pharmacy import ORDERS_QUEUE_SPEC, STATUS_QUEUE, OrderStatusData
from shared.db import UnitOfWork
from shared.errors import NotFound
from shared.events import EVENTS_EXCHANGE, PHARMACY_EXCHANGE, CloudEvent, EventType
from shared.messaging.base import QueueSpec
from shared.messaging.consumer import PermanentError, data_of
from shared.runtime import Subscription
from shared.settings import Settings

INVENTORY_QUEUE = QueueSpec("scheduling.inventory", (
    (EVENTS_EXCHANGE, EventType.PUMP_IMPLANTED),
    (EVENTS_EXCHANGE, EventType.PUMP_EXPLANTED),
    (EVENTS_EXCHANGE, EventType.PUMP_STATUS_CHANGED),
))
PHARMACY_STATUS_QUEUE = QueueSpec(STATUS_QUEUE, ((PHARMACY_EXCHANGE, EventType.ORDER_STATUS),))
PHARMACY_ORDERS_QUEUE = ORDERS_QUEUE_SPEC


M = TypeVar("M", bound=BaseModel)


def _model(model: type[M], event: CloudEvent) -> M:
    try:
        return model.model_validate(data_of(event))
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise PermanentError(f"malformed {event.type}: {errors}") from exc


def handle_order_status(uow: UnitOfWork, event: CloudEvent) -> None:
    """Apply a pharmacy status; unknown orders and malformed bodies are dead-lettered with the reason."""
    data = _model(OrderStatusData, event)
    try:
        deliveries.apply_status(uow, order_id=data.order_id, status=data.status, at=data.at,
                                reason=data.reason, lot=data.lot, beyond_use_at=data.beyond_use_at,
                                source="queue", actor="pharmacy")
    except NotFound as exc:
        raise PermanentError(f"unknown order_id {data.order_id!r}") from exc


def subscriptions(settings: Settings) -> list[Subscription]:
    """The queues scheduling consumes, with their handlers."""

    def implanted(uow: UnitOfWork, event: CloudEvent) -> None:
        data = _model(PumpData, event)
        if not data.patient_mrn:
            raise PermanentError(f"{event.type} without patient_mrn")
        pumps.on_pump_implanted(uow, data)

    def explanted(uow: UnitOfWork, event: CloudEvent) -> None:
        pumps.on_pump_explanted(uow, _model(PumpExplantedData, event), settings=settings)

    def status_changed(uow: UnitOfWork, event: CloudEvent) -> None:
        pumps.on_pump_status_changed(uow, _model(PumpStatusChangedData, event))

    return [
        Subscription(queue=INVENTORY_QUEUE, handlers={
            EventType.PUMP_IMPLANTED: implanted,
            EventType.PUMP_EXPLANTED: explanted,
            EventType.PUMP_STATUS_CHANGED: status_changed,
        }),
        Subscription(queue=PHARMACY_STATUS_QUEUE, handlers={EventType.ORDER_STATUS: handle_order_status}),
    ]
