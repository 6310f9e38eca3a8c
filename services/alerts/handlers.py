"""Alerts's event consumers: each event through its rule, inside the consumer's transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from services.alerts import centers, holds, rules, service, transfers
from services.alerts.settings import AlertsSettings
from shared.contracts.inventory import PumpExplantedData, RecallIssuedData
from shared.contracts.registry import bindings, urgent_types
from shared.contracts.scheduling import (
    AppointmentData,
    CenterSettingsChangedData,
    DeliveryData,
    FlowRecordedData,
    FlowTrendData,
    LotFlowDriftData,
    OrderRefusedData,
    PatientCenterChangedData,
    RefillCompletedData,
    RefillOverdueData,
    RefillVoidedData,
    ReservoirNearEmptyData,
    SweepCompletedData,
    TherapyStatusChangedData,
)
from shared.contracts.vocabulary import EventType
from shared.db import UnitOfWork
from shared.events import CloudEvent
from shared.messaging.base import QueueSpec
from shared.messaging.consumer import Handler, Prepare, payload_of

QUEUE = "alerts.events"
# flow readings have a queue and a consumer of their own: an abnormal flow pages the on-call
# now, and must not wait behind the hundreds of due-soon, overdue and near-empty events a sweep
# announces at once (bench/time_to_page.py measures the time to page)
FLOW_QUEUE = "alerts.flow"
# a refill entered in error withdraws the flow alert its reading raised: it rides the flow queue,
# behind the reading it withdraws, never ahead of it; both are the contract's urgent events,
# which scheduling's outbox relay sends ahead of a sweep's backlog
FLOW_TYPES = urgent_types()


def queue_specs() -> tuple[QueueSpec, QueueSpec]:
    """The alerts queues, each bound to exactly the event types it handles: flow readings, and
    the rest. No handler of one queue depends on the order of the other's events: only a voided
    refill, on the flow queue too, clears a flow alert."""
    return (
        QueueSpec(name=FLOW_QUEUE, bindings=bindings(*FLOW_TYPES)),
        QueueSpec(name=QUEUE, bindings=bindings(*(t for t in HANDLED_TYPES if t not in FLOW_TYPES)),
                  # earlier releases routed flow readings to this queue too
                  retired_bindings=bindings(*FLOW_TYPES)),
    )


HANDLED_TYPES = (
    EventType.REFILL_DUE_SOON, EventType.REFILL_OVERDUE, EventType.RESERVOIR_NEAR_EMPTY,
    EventType.FLOW_RECORDED, EventType.REFILL_COMPLETED, EventType.DELIVERY_LATE,
    EventType.DELIVERY_UPDATED, EventType.SWEEP_COMPLETED, EventType.RECALL_ISSUED,
    EventType.PUMP_EXPLANTED, EventType.REFILL_VOIDED, EventType.ORDER_REFUSED,
    EventType.LOT_FLOW_DRIFT, EventType.FLOW_TREND,
    EventType.CENTER_SETTINGS_CHANGED, EventType.THERAPY_STATUS_CHANGED,
    EventType.PATIENT_CENTER_CHANGED,
)


# what a handler calls with the alerts it raised: the pager's `page_at_commit` (a kick after
# the commit; the flow queue's urgent lane claims their pages in the same transaction)
Wake = Callable[[UnitOfWork, Iterable[str]], None]


Decide = Callable[[UnitOfWork, CloudEvent], rules.RuleResult]


def decisions(settings: AlertsSettings) -> dict[str, Decide]:
    """What each rule-driven event type decides (alerts to raise, conditions cleared)."""

    def pure(rule: Callable[[CloudEvent], rules.RuleResult]) -> Decide:
        return lambda _uow, e: rule(e)

    def flow_abnormal(uow: UnitOfWork, event: CloudEvent) -> rules.RuleResult:
        # by the bands of the reading's centre (its own settings, else the defaults)
        data = payload_of(event, FlowRecordedData)
        own = centers.effective_settings(uow, settings, data.center)
        return rules.flow_abnormal(data, warning_pct=own.flow_warning_pct,
                                   critical_pct=own.flow_critical_pct)

    return {
        EventType.REFILL_DUE_SOON: pure(
            lambda e: rules.refill_due_soon(payload_of(e, AppointmentData))),
        EventType.REFILL_OVERDUE: pure(lambda e: rules.refill_overdue(
            payload_of(e, RefillOverdueData),
            critical_hours_to_empty=settings.overdue_critical_hours_to_empty)),
        EventType.RESERVOIR_NEAR_EMPTY: pure(
            lambda e: rules.reservoir_near_empty(payload_of(e, ReservoirNearEmptyData))),
        EventType.FLOW_RECORDED: flow_abnormal,
        EventType.REFILL_COMPLETED: pure(
            lambda e: rules.refill_completed(payload_of(e, RefillCompletedData))),
        EventType.DELIVERY_LATE: pure(
            lambda e: rules.delivery_late(payload_of(e, DeliveryData))),
        EventType.DELIVERY_UPDATED: pure(
            lambda e: rules.delivery_updated(payload_of(e, DeliveryData))),
        EventType.RECALL_ISSUED: pure(
            lambda e: rules.recall_issued(payload_of(e, RecallIssuedData))),
        EventType.PUMP_EXPLANTED: pure(
            lambda e: rules.pump_explanted(payload_of(e, PumpExplantedData))),
        EventType.REFILL_VOIDED: pure(
            lambda e: rules.refill_voided(payload_of(e, RefillVoidedData))),
        EventType.ORDER_REFUSED: pure(
            lambda e: rules.order_refused(payload_of(e, OrderRefusedData))),
        EventType.LOT_FLOW_DRIFT: pure(
            lambda e: rules.lot_flow_drift(payload_of(e, LotFlowDriftData))),
        EventType.FLOW_TREND: pure(lambda e: rules.flow_trend(payload_of(e, FlowTrendData))),
    }


def make_prepare(settings: AlertsSettings) -> Prepare:
    """Read at once, at the start of a batch's transaction, what its events' handlers would
    each look up: the open alerts of every dedup key they raise (locked) and the transfers of
    every patient they name. A sweep's batch of 20 then costs two statements for these, not 40;
    a recall naming 1,000 pumps two, not 1,000. One alert's lookups are not read ahead."""
    decide = decisions(settings)

    def prepare(uow: UnitOfWork, events: Sequence[CloudEvent]) -> None:
        # an event whose data is bad raises here as in its handler: the batch then goes one
        # event at a time, and that one is dead-lettered with the reason
        results = [decide[e.type](uow, e) for e in events if e.type in decide]
        transfers.look_ahead(uow, results)
        service.look_ahead(uow, results)

    return prepare


def make_handlers(settings: AlertsSettings, wake: Wake) -> dict[str, Handler]:
    """The handler of every consumed event type; a raise pages as the transaction commits."""

    def applying(rule: Decide) -> Handler:
        def handle(uow: UnitOfWork, event: CloudEvent) -> None:
            # a batch's alerts write their audit and outbox rows at its commit, one statement
            # per table (no handler of ours reads them back, nor uses a savepoint)
            uow.defer_platform_writes()
            result = transfers.recentred(uow, rule(uow, event))
            changed = service.apply(uow, result, settings=settings)
            if result.raise_:
                wake(uow, (alert.id for alert in changed))
        return handle

    def settings_changed(uow: UnitOfWork, event: CloudEvent) -> None:
        centers.on_settings_changed(uow, payload_of(event, CenterSettingsChangedData))

    def therapy_status_changed(uow: UnitOfWork, event: CloudEvent) -> None:
        released = holds.on_therapy_status_changed(
            uow, payload_of(event, TherapyStatusChangedData), settings=settings)
        if released:
            wake(uow, (alert.id for alert in released))

    def patient_center_changed(uow: UnitOfWork, event: CloudEvent) -> None:
        paged = transfers.on_patient_center_changed(
            uow, payload_of(event, PatientCenterChangedData), settings=settings)
        if paged:
            wake(uow, (alert.id for alert in paged))

    def heartbeat(uow: UnitOfWork, event: CloudEvent) -> None:
        data = payload_of(event, SweepCompletedData)
        service.record_heartbeat(uow)
        service.apply(uow, rules.heartbeat_heard(data.at), settings=settings)

    return {
        **{event_type: applying(rule) for event_type, rule in decisions(settings).items()},
        EventType.SWEEP_COMPLETED: heartbeat,
        EventType.CENTER_SETTINGS_CHANGED: settings_changed,
        EventType.THERAPY_STATUS_CHANGED: therapy_status_changed,
        EventType.PATIENT_CENTER_CHANGED: patient_center_changed,
    }
