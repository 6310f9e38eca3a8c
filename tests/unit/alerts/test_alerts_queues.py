"""The alerts queues: each consumed event type on exactly one queue, flow readings on their own."""

from __future__ import annotations

from collections import Counter

from services.alerts import app as alerts_app
from services.alerts import handlers
from shared.messaging.inproc import InProcessBus
from tests.helpers import test_settings as make_settings


def test_every_handled_type_has_one_queue_and_flow_readings_a_queue_of_their_own(tmp_path) -> None:
    runtime = alerts_app.bootstrap(make_settings(tmp_path), bus=InProcessBus())
    try:
        subs = {s.queue.name: s for s in runtime.subscriptions}
        assert set(subs) == {handlers.QUEUE, handlers.FLOW_QUEUE}
        bound = Counter(key for s in runtime.subscriptions for _, key in s.queue.bindings)
        assert set(bound) == set(handlers.HANDLED_TYPES) and set(bound.values()) == {1}
        for sub in runtime.subscriptions:  # each queue's handlers are exactly its bindings
            assert set(sub.handlers) == {key for _, key in sub.queue.bindings}
        assert set(subs[handlers.FLOW_QUEUE].handlers) == set(handlers.FLOW_TYPES)
    finally:
        runtime.engine.dispose()
