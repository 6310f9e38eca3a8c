"""The alerts queues: each consumed event type on exactly one queue, flow readings on their own."""

from __future__ import annotations

from collections import Counter

import pytest

from services.alerts import app as alerts_app
from services.alerts import handlers, paging
from shared.messaging.inproc import InProcessBus
from shared.runtime import Worker
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


def test_alerts_handles_its_queues_in_small_batches(tmp_path) -> None:
    # a sweep's burst in transactions of HAI_ALERTS_CONSUMER_BATCH events, not of the service's
    # prefetch (200): a batch's raised rows and pages stay locked, and unseen, only briefly
    settings = make_settings(tmp_path).model_copy(update={"alerts_consumer_batch": 7})
    runtime = alerts_app.bootstrap(settings, bus=InProcessBus())
    try:
        assert {s.queue.name: s.batch for s in runtime.subscriptions} == {
            handlers.QUEUE: 7, handlers.FLOW_QUEUE: 7}
        assert make_settings(tmp_path).alerts_consumer_batch == 20
    finally:
        runtime.engine.dispose()


def test_a_worker_consumes_only_the_queues_it_is_given(tmp_path) -> None:
    # `hai worker alerts --queue alerts.flow`: abnormal flows in a process of their own
    runtime = alerts_app.bootstrap(make_settings(tmp_path), bus=InProcessBus())
    try:
        with pytest.raises(ValueError, match="alerts.nope"):
            Worker(runtime, queues=["alerts.nope"])
        worker = Worker(runtime, relay=False, jobs=False, queues=[handlers.FLOW_QUEUE])
        worker.start()
        try:
            consumers = [t.name for t in worker.threads if "-consume-" in t.name]
        finally:
            worker.stop()
        assert consumers == [f"alerts-consume-{handlers.FLOW_QUEUE}"]
    finally:
        runtime.engine.dispose()


def test_the_pager_is_kicked_once_per_commit_with_every_alert_raised_in_it(tmp_path) -> None:
    runtime = alerts_app.bootstrap(make_settings(tmp_path), bus=InProcessBus())
    kicks: list[list[str]] = []
    try:
        with runtime.uow_factory() as uow:
            paging.kick_after_commit(uow, lambda ids: kicks.append(list(ids)), ["a1"])
            paging.kick_after_commit(uow, lambda ids: kicks.append(list(ids)), ["a2", "a3"])
            assert kicks == []  # nothing before the commit: the pages are not visible yet
            uow.commit()
        assert kicks == [["a1", "a2", "a3"]]
        with runtime.uow_factory() as uow:  # rolled back: no kick
            paging.kick_after_commit(uow, lambda ids: kicks.append(list(ids)), ["b1"])
        assert kicks == [["a1", "a2", "a3"]]
    finally:
        runtime.engine.dispose()


def test_flow_readings_page_on_the_urgent_lane_and_the_rest_on_the_pager_kick(tmp_path) -> None:
    runtime = alerts_app.bootstrap(make_settings(tmp_path), bus=InProcessBus())
    try:
        pager = paging.pager(runtime)
        assert pager.urgent.targeted and not pager.kick.targeted
        subs = {s.queue.name: s for s in runtime.subscriptions}
        # on the in-process bus (SQLite) one consumer each; RabbitMQ: HAI_ALERTS_EVENT_CONSUMERS
        assert [subs[q].consumers for q in (handlers.FLOW_QUEUE, handlers.QUEUE)] == [1, 1]
    finally:
        runtime.engine.dispose()


def test_the_sweep_over_every_due_page_never_runs_in_a_worker_of_abnormal_flows_alone(tmp_path) -> None:
    runtime = alerts_app.bootstrap(make_settings(tmp_path), bus=InProcessBus())
    try:
        def names(worker: Worker) -> set[str]:
            return {j.name for j in worker.jobs()}

        assert names(Worker(runtime)) == {"pager", "pager_urgent", "watchdog"}
        assert names(Worker(runtime, queues=[handlers.QUEUE])) == {"pager", "watchdog"}
        assert names(Worker(runtime, queues=[handlers.FLOW_QUEUE])) == {"pager_urgent", "watchdog"}
        assert names(Worker(runtime, jobs=False)) == set()
    finally:
        runtime.engine.dispose()
