"""Scheduling's consumers: inventory's pump events (the implanted-pump read model) and the
pharmacy's order statuses. Handlers run in the consumer's transaction and never commit."""

from __future__ import annotations

from services.scheduling import deliveries, pumps
from shared.contracts.inventory import PumpData, PumpExplantedData, PumpStatusChangedData
from shared.contracts.pharmacy import ORDERS_QUEUE_SPEC, STATUS_QUEUE, OrderStatusData
from shared.contracts.registry import bindings
from shared.contracts.vocabulary import EventType
from shared.db import UnitOfWork
from shared.errors import NotFound
from shared.events import CloudEvent
from shared.messaging.base import QueueSpec
from shared.messaging.consumer import PermanentError, payload_of
from shared.runtime import Subscription
from shared.settings import Settings

INVENTORY_QUEUE = QueueSpec("scheduling.inventory", bindings(
    EventType.PUMP_IMPLANTED, EventType.PUMP_EXPLANTED, EventType.PUMP_STATUS_CHANGED))
PHARMACY_STATUS_QUEUE = QueueSpec(STATUS_QUEUE, bindings(EventType.ORDER_STATUS))
PHARMACY_ORDERS_QUEUE = ORDERS_QUEUE_SPEC


def handle_order_status(uow: UnitOfWork, event: CloudEvent) -> None:
    """Apply a pharmacy status; unknown orders and malformed bodies are dead-lettered with the reason."""
    data = payload_of(event, OrderStatusData)
    try:
        deliveries.apply_status(uow, order_id=data.order_id, status=data.status, at=data.at,
                                reason=data.reason, lot=data.lot, beyond_use_at=data.beyond_use_at,
                                source="queue", actor="pharmacy")
    except NotFound as exc:
        raise PermanentError(f"unknown order_id {data.order_id!r}") from exc


def subscriptions(settings: Settings) -> list[Subscription]:
    """The queues scheduling consumes, with their handlers."""

    def implanted(uow: UnitOfWork, event: CloudEvent) -> None:
        data = payload_of(event, PumpData)
        if not data.patient_mrn:
            raise PermanentError(f"{event.type} without patient_mrn")
        pumps.on_pump_implanted(uow, data)

    def explanted(uow: UnitOfWork, event: CloudEvent) -> None:
        pumps.on_pump_explanted(uow, payload_of(event, PumpExplantedData), settings=settings)

    def status_changed(uow: UnitOfWork, event: CloudEvent) -> None:
        pumps.on_pump_status_changed(uow, payload_of(event, PumpStatusChangedData))

    return [
        Subscription(queue=INVENTORY_QUEUE, handlers={
            EventType.PUMP_IMPLANTED: implanted,
            EventType.PUMP_EXPLANTED: explanted,
            EventType.PUMP_STATUS_CHANGED: status_changed,
        }),
        Subscription(queue=PHARMACY_STATUS_QUEUE, handlers={EventType.ORDER_STATUS: handle_order_status}),
    ]
