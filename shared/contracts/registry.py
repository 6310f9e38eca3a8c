"""Every event of the contract, once: its type, payload model, exchange, publisher and meaning.

Publishing takes a payload model and finds its type here (`spec_for`); a consumer validates an
event's data with the model its type is registered with (`parse`). Each payload model belongs to
exactly one event type, so that the model names the event. The routing key is the type.
docs/asyncapi.json is generated from this table (`python -m shared.contracts.asyncapi`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from shared.contracts.alerts import (
    AlertAcknowledgedData,
    AlertRaisedData,
    AlertResolvedData,
    PageFailedData,
    PageSentData,
)
from shared.contracts.inventory import (
    PumpExplantedData,
    PumpImplantedData,
    PumpRegisteredData,
    PumpStatusChangedData,
    RecallIssuedData,
)
from shared.contracts.pharmacy import OrderCancelledData, OrderRequestedData, OrderStatusData
from shared.contracts.scheduling import (
    AppointmentScheduledData,
    CenterSettingsChangedData,
    DeliveryLateData,
    DeliveryUpdatedData,
    FlowRecordedData,
    FlowTrendData,
    LotFlowDriftData,
    OrderRefusedData,
    PatientCenterChangedData,
    RefillCompletedData,
    RefillDueSoonData,
    RefillOverdueData,
    RefillVoidedData,
    ReservoirNearEmptyData,
    SweepCompletedData,
    TherapyStatusChangedData,
)
from shared.contracts.vocabulary import EventType
from shared.events import EVENTS_EXCHANGE, PHARMACY_EXCHANGE

P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True)
class EventSpec:
    """One event type of the contract."""

    event_type: EventType
    payload: type[BaseModel]
    publisher: str  # the service that publishes it (`pharmacy`: the pharmacy system)
    description: str
    exchange: str = EVENTS_EXCHANGE
    subject: str | None = None  # what the CloudEvents `subject` names
    # its publisher's outbox relay sends it ahead of an older backlog (`urgent_types`)
    urgent: bool = False

    @property
    def routing_key(self) -> str:
        return self.event_type.value


SCHED, INV, ALERTS = "scheduling", "inventory", "alerts"
PUMP, ORDER, ALERT = "pump serial", "order id", "alert id"

SPECS: tuple[EventSpec, ...] = (
    EventSpec(EventType.PUMP_REGISTERED, PumpRegisteredData, INV, "A pump received into stock.",
              subject=PUMP),
    EventSpec(EventType.PUMP_IMPLANTED, PumpImplantedData, INV,
              "A pump implanted in a patient (with the patient, centre, reservoir and labeled "
              "flow scheduling needs).", subject=PUMP),
    EventSpec(EventType.PUMP_EXPLANTED, PumpExplantedData, INV, "A pump explanted.", subject=PUMP),
    EventSpec(EventType.PUMP_STATUS_CHANGED, PumpStatusChangedData, INV,
              "A pump quarantined, released or retired.", subject=PUMP),
    EventSpec(EventType.RECALL_ISSUED, RecallIssuedData, INV,
              "A recall: stock of the lots quarantined, the implanted pumps named.",
              subject="recall id"),
    EventSpec(EventType.APPOINTMENT_SCHEDULED, AppointmentScheduledData, SCHED,
              "A refill appointment opened (a therapy's first fill, the fill after a refill, a "
              "booking, an appointment opened again).", subject=PUMP),
    EventSpec(EventType.REFILL_DUE_SOON, RefillDueSoonData, SCHED, "An open appointment coming due.",
              subject=PUMP),
    EventSpec(EventType.REFILL_OVERDUE, RefillOverdueData, SCHED,
              "An open appointment past due: how late, and how long until the pump is empty.",
              subject=PUMP),
    EventSpec(EventType.REFILL_COMPLETED, RefillCompletedData, SCHED,
              "A refill recorded, with its flow figures and the next appointment.", subject=PUMP),
    EventSpec(EventType.FLOW_RECORDED, FlowRecordedData, SCHED,
              "A measured flow rate, from a refill after the first.", subject=PUMP, urgent=True),
    EventSpec(EventType.DELIVERY_UPDATED, DeliveryUpdatedData, SCHED,
              "A drug delivery order requested, or its status moved.", subject=ORDER),
    EventSpec(EventType.DELIVERY_LATE, DeliveryLateData, SCHED,
              "A drug delivery order not delivered by the time it is needed.", subject=ORDER),
    EventSpec(EventType.SWEEP_COMPLETED, SweepCompletedData, SCHED,
              "The heartbeat: once per sweep of the scheduled jobs, with each job's outcome."),
    EventSpec(EventType.RESERVOIR_NEAR_EMPTY, ReservoirNearEmptyData, SCHED,
              "An open appointment whose pump runs dry within the near-empty horizon, and the "
              "hours left.", subject=PUMP),
    EventSpec(EventType.REFILL_VOIDED, RefillVoidedData, SCHED,
              "A refill entered in error: out of every figure, its appointments undone.",
              subject=PUMP, urgent=True),
    EventSpec(EventType.ORDER_REFUSED, OrderRefusedData, SCHED,
              "A chemo fill's pharmacy order not sent: its dose could not be computed or broke "
              "a hard limit.", subject=PUMP),
    EventSpec(EventType.LOT_FLOW_DRIFT, LotFlowDriftData, SCHED,
              "A pump model's lot whose pumps' mean flow deviation differs from the model's other "
              "pumps (Welch's t-test), with its evidence; again as the evidence grows.",
              subject="model code/lot number"),
    EventSpec(EventType.FLOW_TREND, FlowTrendData, SCHED,
              "A pump's flow trend after a reading (least-squares slope, the next reading "
              "predicted), and whether the prediction leaves the band.", subject=PUMP),
    EventSpec(EventType.CENTER_SETTINGS_CHANGED, CenterSettingsChangedData, SCHED,
              "A centre's own settings changed by an admin (time zone, refill and flow "
              "thresholds, escalation and acknowledgement times); null fields fall back to the "
              "system default.", subject="centre"),
    EventSpec(EventType.THERAPY_STATUS_CHANGED, TherapyStatusChangedData, SCHED,
              "A therapy paused, resumed or stopped by a clinician (or stopped with its pump's "
              "explant), with the reason; alerts holds the pump's warnings while it is paused.",
              subject=PUMP),
    EventSpec(EventType.PATIENT_CENTER_CHANGED, PatientCenterChangedData, SCHED,
              "A patient transferred to another centre: their implanted pumps, open "
              "appointments and deliveries not yet administered moved with them (ids only); "
              "past refills keep the centre they were done at.", subject="patient MRN"),
    EventSpec(EventType.ALERT_RAISED, AlertRaisedData, ALERTS,
              "An alert raised, or raised again with a higher severity.", subject=ALERT),
    EventSpec(EventType.ALERT_ACKNOWLEDGED, AlertAcknowledgedData, ALERTS, "An alert acknowledged.",
              subject=ALERT),
    EventSpec(EventType.ALERT_RESOLVED, AlertResolvedData, ALERTS,
              "An alert resolved, by a person or by its condition clearing.", subject=ALERT),
    EventSpec(EventType.PAGE_SENT, PageSentData, ALERTS, "A page delivered to an on-call member.",
              subject=ALERT),
    EventSpec(EventType.PAGE_FAILED, PageFailedData, ALERTS,
              "A page given up after its last attempt (the next level is paged).", subject=ALERT),
    EventSpec(EventType.ORDER_REQUESTED, OrderRequestedData, SCHED,
              "A drug delivery order for a chemo fill, to the pharmacy system.",
              exchange=PHARMACY_EXCHANGE, subject=ORDER),
    EventSpec(EventType.ORDER_CANCELLED, OrderCancelledData, SCHED,
              "A drug delivery order withdrawn, with the order as requested and the reason.",
              exchange=PHARMACY_EXCHANGE, subject=ORDER),
    EventSpec(EventType.ORDER_STATUS, OrderStatusData, "pharmacy",
              "An order's status, from the pharmacy system (consumed by scheduling).",
              exchange=PHARMACY_EXCHANGE, subject=ORDER),
)

EVENTS: dict[str, EventSpec] = {spec.event_type: spec for spec in SPECS}
_BY_MODEL: dict[type[BaseModel], EventSpec] = {spec.payload: spec for spec in SPECS}

if len(EVENTS) != len(SPECS) or len(_BY_MODEL) != len(SPECS) or set(EVENTS) != set(EventType):
    raise RuntimeError("the registry needs each event type once, each with its own payload model")


class UnknownEventType(LookupError):
    """A type (or a payload model) the contract does not have."""


def spec_for(payload: BaseModel | type[BaseModel]) -> EventSpec:
    """The event a payload model is the data of (its exact class: a model names one event)."""
    model = payload if isinstance(payload, type) else type(payload)
    try:
        return _BY_MODEL[model]
    except KeyError:
        raise UnknownEventType(f"{model.__name__} is not the payload of any event type") from None


def spec_of(event_type: str) -> EventSpec:
    """The spec of an event type, or UnknownEventType."""
    try:
        return EVENTS[event_type]
    except KeyError:
        raise UnknownEventType(f"unknown event type {event_type!r}") from None


def urgent_types(publisher: str | None = None) -> tuple[EventType, ...]:
    """The events an outbox relay sends ahead of an older backlog (of `publisher`'s, or all).

    An abnormal flow pages the on-call now, not after the thousands of events a sweep or a
    recall committed just before it. These are exactly the events of alerts' flow queue (a
    reading, and the voided refill that withdraws its alert): their relay keeps their order
    among themselves, and no consumer of the other events depends on the order between those
    and these (services/alerts/handlers.py's queue_specs)."""
    return tuple(s.event_type for s in SPECS
                 if s.urgent and (publisher is None or s.publisher == publisher))


def bindings(*event_types: EventType) -> tuple[tuple[str, str], ...]:
    """The (exchange, routing key) pairs a queue binds to receive these event types."""
    return tuple((spec_of(t).exchange, spec_of(t).routing_key) for t in event_types)


def parse(event_type: str, data: Any, expected: type[P]) -> P:
    """Validate an event's data with the model its type is registered with (pydantic's
    ValidationError when it does not fit); `expected` is what the caller handles, the
    registered model or a base of it (TypeError otherwise: a handler bound to the wrong type)."""
    model = spec_of(event_type).payload
    if not issubclass(model, expected):
        raise TypeError(f"{event_type} carries {model.__name__}, not {expected.__name__}")
    return model.model_validate(data)
