"""An abnormal flow's event leaves ahead of a backlog: an outbox relay sends the contract's urgent
events (a flow reading, the voided refill that withdraws its alert) before older rows, in their
own order, then the rest oldest first. On PostgreSQL (the relay's claim locks and skips what
another relay holds) and on SQLite."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.contracts.registry import urgent_types
from shared.contracts.vocabulary import EventType
from shared.db import make_engine
from shared.messaging.base import QueueSpec
from shared.messaging.inproc import InProcessBus
from shared.messaging.relay import OutboxRelay
from shared.runtime import ServiceRuntime
from tests.unit.platform.toyservice import toy_runtime

EVERYTHING = QueueSpec("probe.everything", (("hai.events", "#"),))
OVERDUE = EventType.REFILL_OVERDUE.value
FLOW, VOIDED = EventType.FLOW_RECORDED.value, EventType.REFILL_VOIDED.value


def _runtime(kind: str, tmp_path: Path, pg_database: Callable[[str], str],
             bus: InProcessBus) -> ServiceRuntime:
    engine = make_engine(pg_database("outbox_urgent")) if kind == "pg" else None
    return toy_runtime(tmp_path, engine=engine, bus=bus)


def _commit(rt: ServiceRuntime, events: list[tuple[str, str]]) -> None:
    with rt.uow_factory() as uow:
        for event_type, label in events:
            uow.publish_raw(event_type, {"label": label})
        uow.commit()


def _sent(bus: InProcessBus) -> list[str]:
    return [json.loads(d.body)["data"]["label"] for d in bus.take(EVERYTHING.name)]


def test_the_urgent_events_are_the_flow_queue_s() -> None:
    """Exactly alerts' flow queue's events, all scheduling's: what the relay puts first is what
    no consumer of the rest depends on the order of."""
    from services.alerts.handlers import FLOW_TYPES

    assert set(urgent_types("scheduling")) == set(FLOW_TYPES) == {
        EventType.FLOW_RECORDED, EventType.REFILL_VOIDED}
    assert urgent_types("inventory") == urgent_types("alerts") == ()


@pytest.mark.parametrize("kind", ["sqlite", "pg"])
def test_urgent_events_leave_ahead_of_an_older_backlog_in_their_own_order(
        kind: str, tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    bus = InProcessBus()
    bus.declare([EVERYTHING])
    rt = _runtime(kind, tmp_path, pg_database, bus)
    try:
        # a sweep's backlog, then a reading, the refill voided, and the next reading
        _commit(rt, [(OVERDUE, f"overdue-{i}") for i in range(5)])
        _commit(rt, [(FLOW, "flow-1"), (VOIDED, "voided-1"), (FLOW, "flow-2")])
        _commit(rt, [(OVERDUE, "overdue-5")])
        relay = OutboxRelay(rt.uow_factory, lambda: bus, batch_size=2,
                            first=[t.value for t in urgent_types("scheduling")])
        batches = []
        while relay.run_once():
            batches.append(_sent(bus))
        assert batches == [["flow-1", "voided-1"], ["flow-2", "overdue-0"],
                           ["overdue-1", "overdue-2"], ["overdue-3", "overdue-4"], ["overdue-5"]]

        # without urgent types (every other service's relay): oldest first, as before
        _commit(rt, [(OVERDUE, "late-0"), (FLOW, "late-flow"), (OVERDUE, "late-1")])
        plain = OutboxRelay(rt.uow_factory, lambda: bus, batch_size=10)
        assert plain.run_once() == 3
        assert _sent(bus) == ["late-0", "late-flow", "late-1"]
    finally:
        rt.engine.dispose()
