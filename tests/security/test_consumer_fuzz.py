"""Every consumer, fed random and malformed messages: each one is acked or dead-lettered with a
reason (never retried for bad data, never an exception out of the consumer), and a
dead-lettered message leaves no row behind in any of the service's tables.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from shared.contracts.pharmacy import STATUS_QUEUE
from shared.events import CloudEvent, EventType
from shared.messaging.base import Delivery
from shared.messaging.consumer import EventConsumer
from tests import factories as f
from tests.factories import T0, iso
from tests.helpers import start_service, test_settings

AT = iso(T0)
# One valid payload per consumed event type: the seed the mutations start from.
VALID: dict[str, dict[str, Any]] = {
    EventType.PUMP_IMPLANTED: f.pump_implanted(),
    EventType.PUMP_EXPLANTED: f.pump_explanted(),
    EventType.PUMP_STATUS_CHANGED: f.pump_status_changed(),
    EventType.ORDER_STATUS: f.order_status(),
    EventType.REFILL_DUE_SOON: f.appointment_scheduled(projected_empty_at=f.at(days=4)),
    EventType.REFILL_OVERDUE: f.refill_overdue(),
    EventType.RESERVOIR_NEAR_EMPTY: f.reservoir_near_empty(),
    EventType.FLOW_RECORDED: f.flow_recorded(),
    EventType.REFILL_COMPLETED: f.refill_completed(),
    EventType.DELIVERY_LATE: f.delivery(),
    EventType.DELIVERY_UPDATED: f.delivery(status="rejected", history=[
        {"at": AT, "status": "rejected", "reason": "out of stock"}]),
    EventType.SWEEP_COMPLETED: f.sweep_completed(),
    EventType.REFILL_VOIDED: f.refill_voided(),
    EventType.ORDER_REFUSED: f.order_refused(),
    EventType.RECALL_ISSUED: f.recall_issued(),
    EventType.LOT_FLOW_DRIFT: f.lot_flow_drift(),
    EventType.FLOW_TREND: f.flow_trend(),
    EventType.CENTER_SETTINGS_CHANGED: f.center_settings_changed(),
    EventType.THERAPY_STATUS_CHANGED: f.therapy_status_changed("paused"),
    EventType.PATIENT_CENTER_CHANGED: f.patient_center_changed(),
}

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
                | st.sampled_from(["", AT, "2026-13-45", "2026-11-26T14:00:00", "-1", "1e308"]))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                           max_leaves=10)


@st.composite
def payloads(draw: st.DrawFn, event_type: str) -> Any:
    """A payload for the event type: the valid one, mutated, or anything at all."""
    valid = dict(VALID[event_type])
    how = draw(st.sampled_from(["valid", "drop", "replace", "extra", "random", "not-object"]))
    if how == "drop":
        valid.pop(draw(st.sampled_from(sorted(valid))))
    elif how == "replace":
        for key in draw(st.lists(st.sampled_from(sorted(valid)), min_size=1, max_size=3)):
            valid[key] = draw(json_values)
    elif how == "extra":
        valid[draw(st.text(min_size=1, max_size=10))] = draw(json_values)
    elif how == "random":
        return draw(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
    elif how == "not-object":
        return draw(json_values.filter(lambda v: not isinstance(v, dict)))
    return valid


@st.composite
def bodies(draw: st.DrawFn, event_types: list[str]) -> bytes:
    """A message body: a CloudEvent of a handled (or unknown) type, or a malformed one."""
    kind = draw(st.sampled_from(["event", "event", "event", "bytes", "json", "envelope"]))
    if kind == "bytes":
        return draw(st.binary(max_size=80))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    event_type = draw(st.sampled_from([*event_types, "hai.unknown.thing"]))
    data = draw(payloads(event_type)) if event_type in VALID else draw(json_values)
    envelope: dict[str, Any] = json.loads(CloudEvent.create(
        source="/fuzz", type=event_type, data=None, id=str(uuid.uuid4())).model_dump_json())
    envelope["data"] = data
    if kind == "envelope":
        key = draw(st.sampled_from(["specversion", "id", "source", "type", "time"]))
        if draw(st.booleans()):
            envelope.pop(key)
        else:
            envelope[key] = draw(json_values)
    return json.dumps(envelope).encode()


def _row_counts(runtime) -> dict[str, int]:
    with runtime.engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in runtime.metadata.sorted_tables if t.name != "inbox"}


def _consumers(name: str, tmp_path) -> list[tuple[Any, EventConsumer]]:
    harness = start_service(name, test_settings(tmp_path))
    rt = harness.runtime
    return [(rt, EventConsumer(sub.queue.name, sub.queue, sub.handlers, rt.uow_factory,
                               max_attempts=rt.settings.consumer_max_attempts))
            for sub in rt.subscriptions]


def _fuzz(runtime, consumer: EventConsumer) -> dict[str, int]:
    """Feed the consumer generated messages one at a time; count the outcomes."""
    seen = {"ack": 0, "dead_letter": 0}

    @given(body=bodies(sorted(consumer.handlers)))
    @settings(max_examples=80, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def one_message(body: bytes) -> None:
        before = _row_counts(runtime)
        delivery = Delivery(body=body, routing_key="fuzz", exchange="hai.events",
                            message_id=str(uuid.uuid4()))
        [outcome] = consumer.process([delivery])
        assert outcome.action in ("ack", "dead_letter"), (
            f"{consumer.name}: {outcome.action} ({outcome.reason}) for {body!r}")
        seen[outcome.action] += 1
        if outcome.action == "dead_letter":
            assert outcome.reason, body
            assert _row_counts(runtime) == before, f"dead-lettered {body!r} left rows behind"

    one_message()
    return seen


@pytest.mark.parametrize("name", ["inventory", "scheduling", "alerts"])
def test_every_message_is_acked_or_dead_lettered_and_leaves_nothing_when_refused(name, tmp_path):
    consumers = _consumers(name, tmp_path)
    assert consumers, f"{name} consumes no queue"
    for runtime, consumer in consumers:
        missing = set(consumer.handlers) - set(VALID)
        assert not missing, f"no valid seed payload for {missing}"
        seen = _fuzz(runtime, consumer)
        assert seen["dead_letter"] > 0, (consumer.name, seen)
        if consumer.name != STATUS_QUEUE:  # statuses of orders never placed are all refused
            assert seen["ack"] > 0, (consumer.name, seen)


def _order_id(tmp_path) -> tuple[Any, str]:
    """Scheduling with a chemo order placed (a therapy starting inside the lead time)."""
    from tests.helpers import start
    from tests.unit.scheduling.scheduling_support import setup_therapy, worklist

    harness, bus = start("scheduling", test_settings(tmp_path))
    setup_therapy(harness, bus, start_on="2026-11-04")
    [appt] = worklist(harness)
    return harness, appt["delivery_id"]


def _inbox_ids(runtime) -> set[str]:
    inbox = runtime.platform.inbox
    with runtime.engine.connect() as conn:
        return set(conn.execute(select(inbox.c.event_id)).scalars())


@pytest.mark.parametrize("name", ["inventory", "scheduling", "alerts"])
def test_a_batch_with_a_bad_message_still_handles_the_good_ones(name, tmp_path):
    consumers = _consumers(name, tmp_path / "fuzz")
    assert consumers
    for runtime, consumer in consumers:
        if consumer.name == STATUS_QUEUE:  # a status is only good for an order that exists
            harness, order_id = _order_id(tmp_path / "orders")
            runtime = harness.runtime
            consumer = EventConsumer(consumer.name, consumer.queue, consumer.handlers,
                                     runtime.uow_factory, max_attempts=3)
            event_type = EventType.ORDER_STATUS
            good_data: dict[str, Any] = {"order_id": order_id, "status": "accepted", "at": AT}
        else:
            event_type = sorted(consumer.handlers)[0]
            good_data = VALID[event_type]
        good = CloudEvent.create(source="/fuzz", type=event_type, data=good_data)
        bad = CloudEvent.create(source="/fuzz", type=event_type, data={"nonsense": True})
        deliveries = [Delivery(body=e.to_json_bytes(), routing_key=event_type,
                               exchange="hai.events") for e in (good, bad)]
        deliveries.append(Delivery(body=b"\xff{", routing_key="x", exchange="hai.events"))
        outcomes = consumer.process(deliveries)
        assert [(o.action, o.reason) for o in outcomes][0] == ("ack", None), (consumer.name,
                                                                            outcomes)
        assert [o.action for o in outcomes][1:] == ["dead_letter", "dead_letter"], outcomes
        handled = _inbox_ids(runtime)
        assert good.id in handled and bad.id not in handled, (consumer.name, handled)
