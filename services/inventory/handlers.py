"""Inventory's consumer: scheduling's patient transfers (the implant record's centre). Handlers
run in the consumer's transaction and never commit."""

from __future__ import annotations

from services.inventory import service
from shared.contracts.registry import bindings
from shared.contracts.scheduling import PatientCenterChangedData
from shared.contracts.vocabulary import EventType
from shared.db import UnitOfWork
from shared.events import CloudEvent
from shared.messaging.base import QueueSpec
from shared.messaging.consumer import payload_of
from shared.runtime import Subscription

SCHEDULING_QUEUE = QueueSpec("inventory.scheduling", bindings(EventType.PATIENT_CENTER_CHANGED))


def handle_patient_center_changed(uow: UnitOfWork, event: CloudEvent) -> None:
    """Move the transferred patient's implanted pumps to the new centre."""
    service.on_patient_center_changed(uow, payload_of(event, PatientCenterChangedData))


def subscriptions() -> list[Subscription]:
    """The queues inventory consumes, with their handlers."""
    return [Subscription(queue=SCHEDULING_QUEUE, handlers={
        EventType.PATIENT_CENTER_CHANGED: handle_patient_center_changed})]
