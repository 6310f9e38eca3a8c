"""Paging on PostgreSQL: a worker dying mid-escalation, two workers at once, and RabbitMQ end to end."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from services.alerts import app as alerts_app
from services.alerts import paging
from services.alerts.models import Alert, Notification
from shared.clock import MovableClock, SystemClock
from shared.events import EVENTS_EXCHANGE, CloudEvent, EventType
from shared.messaging.base import OutgoingMessage
from shared.messaging.inproc import InProcessBus
from shared.migrations import upgrade
from shared.runtime import ServiceRuntime, Worker
from tests.doubles import WebhookReceiver, webhook
from tests.factories import T0, appointment_scheduled, flow_recorded, oncall_body
from tests.helpers import Harness, emit, start_service, wait_until
from tests.helpers import test_settings as make_settings
from tests.integration.alerts.alerts_testkit import ONCALL


def pg_alerts(tmp_path, url: str, clock: MovableClock, bus: InProcessBus, **overrides: object) -> Harness:
    settings = make_settings(tmp_path, alerts_database_url=url, page_timeout_seconds=2.0, **overrides)
    return start_service("alerts", settings, clock=clock, bus=bus)


def fresh_runtime(h: Harness) -> ServiceRuntime:
    """Another alerts process on the same database (its own engine, its own channels)."""
    return alerts_app.bootstrap(h.runtime.settings, clock=h.runtime.clock, bus=InProcessBus())


def statuses(rt: ServiceRuntime) -> list[tuple[int, str, int]]:
    with rt.uow_factory() as uow:
        rows = uow.session.execute(select(Notification).order_by(Notification.level)).scalars()
        return [(n.level, n.status, n.attempts) for n in rows]


def test_worker_killed_mid_escalation_restarts_without_losing_or_repeating_a_page(
        tmp_path, pg_database: Callable[[str], str]) -> None:
    clock, bus = MovableClock(T0), InProcessBus()
    h = pg_alerts(tmp_path, pg_database("alerts"), clock, bus)
    with webhook() as l1, webhook() as l2, webhook() as l3:
        h.client.put("/v1/oncall/north", headers=ONCALL, json=oncall_body(
            [("ann", "webhook", l1.url)], [("bob", "webhook", l2.url)], [("cy", "webhook", l3.url)],
            delay_s=900))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=40))
        first = h.runtime
        assert paging.sweep_once(first)["sent"] == 1
        clock.advance(seconds=901)
        # the first worker escalates and claims the level-2 page, then dies before sending it
        assert paging.escalate_due(first.uow_factory, settings=first.settings) == 1
        (claim,) = paging.claim_due(first.uow_factory, settings=first.settings)
        first.engine.dispose()
        assert claim.page.level == 2

        second = fresh_runtime(h)
        assert paging.sweep_once(second)["claimed"] == 0  # the dead worker's lease still holds
        clock.advance(seconds=paging.lease_seconds(second.settings) + 1)
        assert paging.sweep_once(second)["sent"] == 1
        # the dead worker coming back to record its old claim changes nothing
        assert paging.record_result(first.uow_factory, claim, None, settings=first.settings) == "claim_lost"
        clock.advance(seconds=900)
        assert paging.sweep_once(second) == {"escalated": 1, "claimed": 1, "sent": 1, "retrying": 0,
                                             "failed": 0, "claim_lost": 0}
        clock.advance(hours=5)
        third = fresh_runtime(h)
        assert paging.sweep_once(third)["claimed"] == 0
        assert [len(l1.pages), len(l2.pages), len(l3.pages)] == [1, 1, 1]
        assert [p["level"] for p in l2.pages + l3.pages] == [2, 3]
        assert statuses(third) == [(1, "sent", 1), (2, "sent", 2), (3, "sent", 1)]


def three_flow_alerts(h: Harness, bus: InProcessBus, hook: WebhookReceiver) -> None:
    """`hook` on call for centre north, and abnormal flows of pumps SN0, SN1, SN2 raised."""
    h.client.put("/v1/oncall/north", headers=ONCALL, json=oncall_body([("ann", "webhook", hook.url)]))
    for i in range(3):
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(f"SN{i}", 40))


def test_pages_planned_but_never_claimed_are_sent_by_the_next_worker(
        tmp_path, pg_database: Callable[[str], str]) -> None:
    clock, bus = MovableClock(T0), InProcessBus()
    h = pg_alerts(tmp_path, pg_database("alerts"), clock, bus)
    with webhook() as l1:
        three_flow_alerts(h, bus, l1)
        h.runtime.engine.dispose()  # the worker that raised them is gone
        assert paging.sweep_once(fresh_runtime(h))["sent"] == 3
        assert sorted(p["alert"]["pump_serial"] for p in l1.pages) == ["SN0", "SN1", "SN2"]


def test_a_targeted_sweep_sends_only_the_pages_of_the_alerts_it_names(
        tmp_path, pg_database: Callable[[str], str]) -> None:
    # the urgent lane (a flow reading's page) claims its own alerts' pages, not the oldest due
    clock, bus = MovableClock(T0), InProcessBus()
    h = pg_alerts(tmp_path, pg_database("alerts"), clock, bus)
    with webhook() as l1:
        three_flow_alerts(h, bus, l1)
        with h.runtime.uow_factory() as uow:
            by_serial = {a.pump_serial: a.id for a in uow.session.scalars(select(Alert))}
        facts = paging.sweep_once(h.runtime, alert_ids={by_serial["SN2"]})
        assert (facts["claimed"], facts["sent"], facts["escalated"]) == (1, 1, 0)
        assert [p["alert"]["pump_serial"] for p in l1.pages] == ["SN2"]
        assert paging.sweep_once(h.runtime, alert_ids={"no-such-alert"})["claimed"] == 0
        assert paging.sweep_once(h.runtime)["sent"] == 2
        assert sorted(p["alert"]["pump_serial"] for p in l1.pages) == ["SN0", "SN1", "SN2"]


def test_two_workers_page_each_notification_once(tmp_path, pg_database: Callable[[str], str]) -> None:
    clock, bus = MovableClock(T0), InProcessBus()
    # 60 separate pages to one recipient: no storm grouping here (its own tests have it)
    h = pg_alerts(tmp_path, pg_database("alerts"), clock, bus, page_rate_per_minute=1000)
    with webhook(fail_first=5) as hook:
        h.client.put("/v1/oncall/north", headers=ONCALL, json=oncall_body([("ann", "webhook", hook.url)]))
        for i in range(60):
            emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(f"SN{i}", 40))
        workers = [fresh_runtime(h), fresh_runtime(h)]
        sent = Counter[str]()
        lock = threading.Lock()

        def work(rt: ServiceRuntime) -> None:
            for _ in range(40):
                facts = paging.sweep_once(rt)
                with lock:
                    sent.update({k: v for k, v in facts.items() if v})

        for _ in range(3):  # three rounds, the clock moved past the retry backoff between them
            threads = [threading.Thread(target=work, args=(rt,)) for rt in workers]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            clock.advance(seconds=30)
        ids = Counter(p["notification_id"] for p in hook.pages)
        assert len(ids) == 60 and set(ids.values()) == {1}, ids.most_common(3)
        assert sent["sent"] == 60 and sent["claim_lost"] == 0
        assert hook.attempts == 65
        assert {s for _, s, _ in statuses(workers[0])} == {"sent"}


def rabbit_alerts(tmp_path, url: str, amqp_url: str, **overrides: object) -> tuple[Any, ServiceRuntime]:
    """The alerts service on PostgreSQL `url` (migrated) and RabbitMQ, on the system clock."""
    from shared.messaging.rabbit import RabbitBus

    settings = make_settings(tmp_path, alerts_database_url=url, amqp_url=amqp_url, **overrides)
    upgrade("alerts", url)
    bus = RabbitBus(amqp_url)
    return bus, alerts_app.bootstrap(settings, clock=SystemClock(), bus=bus)


def publish_flow(bus: Any, serial: str) -> None:
    """An abnormal flow reading of pump `serial`, published on the broker as scheduling would."""
    event = CloudEvent.create(source="/hai/test", type=EventType.FLOW_RECORDED,
                              data=flow_recorded(serial, 40))
    publisher = bus.publisher()
    publisher.publish_batch([OutgoingMessage(event.id, EVENTS_EXCHANGE, event.type,
                                             event.to_json_bytes())])
    publisher.close()


def start_paging_to(hook: WebhookReceiver | None, runtime: ServiceRuntime, worker: Worker,
                    body: dict[str, object] | None = None) -> None:
    """Put `hook` (or the on-call table `body`) on call for centre north, then start the worker
    (consumers, pager)."""
    from fastapi.testclient import TestClient

    client = TestClient(alerts_app.create_app(runtime))
    body = body or oncall_body([("ann", "webhook", hook.url if hook else "")])
    assert client.put("/v1/oncall/north", headers=ONCALL, json=body).status_code == 200
    worker.start()


def test_a_page_is_sent_on_the_consumers_commit_not_on_the_next_sweep(
        tmp_path, pg_database: Callable[[str], str], amqp_url: str) -> None:
    """The pager's sweep is an hour apart here: pages that arrive at all were sent because the
    consumer's commit woke the pager (no timing is measured: timings belong in bench/)."""
    bus, runtime = rabbit_alerts(tmp_path, pg_database("alerts"), amqp_url, page_sweep_seconds=3600.0)
    worker = Worker(runtime)
    with webhook() as hook:
        start_paging_to(hook, runtime, worker)
        try:
            publisher = bus.publisher()
            for i in range(10):
                event = CloudEvent.create(source="/hai/test", type=EventType.FLOW_RECORDED,
                                          data=flow_recorded(f"SN{i}", 40))
                publisher.publish_batch([OutgoingMessage(event.id, EVENTS_EXCHANGE, event.type,
                                                         event.to_json_bytes())])
                count = i + 1
                wait_until(lambda count=count: len(hook.pages) >= count,
                    what=f"page {count}, sent when the consumer commits", timeout_s=30)
            publisher.close()
        finally:
            worker.stop()
            bus.close()
    assert sorted(p["alert"]["pump_serial"] for p in hook.pages) == [f"SN{i}" for i in range(10)]


def test_a_flow_page_does_not_wait_behind_a_burst_of_sweep_announcements(
        tmp_path, pg_database: Callable[[str], str], fresh_vhost: str) -> None:
    # a sweep announces hundreds of overdue refills at once to a running worker; an abnormal flow
    # reading sent just after them must page without waiting for them all: flow readings have
    # their own queue, and their pages the urgent lane (the bulk passes leave them to it, as
    # deploy/ sets HAI_PAGER_URGENT_GRACE_SECONDS). The storm limit is lifted:
    # its hold (the recipient's 20 messages a minute, which the burst's pages use up in a
    # second) would keep the flow page waiting too, up to a minute (the paging policy, not the
    # queues this test is about)
    bus, runtime = rabbit_alerts(tmp_path, pg_database("alerts"), fresh_vhost, page_sweep_seconds=1.0,
                                 page_rate_per_minute=1_000_000, pager_urgent_grace_seconds=2.0)
    bus.declare(runtime.all_queues())
    burst = 600

    def message(event_type: str, data: dict[str, object]) -> OutgoingMessage:
        event = CloudEvent.create(source="/hai/test", type=event_type, data=data)
        return OutgoingMessage(event.id, EVENTS_EXCHANGE, event.type, event.to_json_bytes())

    def overdue_alerts() -> int:
        with runtime.uow_factory() as uow:
            return len(uow.session.scalars(select(Alert.id).where(
                Alert.kind == "refill_overdue")).all())

    worker = Worker(runtime)
    with webhook() as hook:
        start_paging_to(hook, runtime, worker)
        try:
            # running: the pager's jobs have armed its lanes (a kick before that is dropped, and
            # the page waits for a pager pass)
            state = paging.pager(runtime)
            wait_until(lambda: state.urgent.armed and state.kick.armed, what="the pager armed")
            publisher = bus.publisher()
            publisher.publish_batch([message(EventType.REFILL_OVERDUE, appointment_scheduled(
                f"appt-{i}", f"SN-OVERDUE-{i}", overdue_hours=30.0, hours_to_empty=200.0))
                for i in range(burst)])
            publisher.publish_batch([message(EventType.FLOW_RECORDED, flow_recorded("SN-FLOW", 40))])
            publisher.close()
            wait_until(lambda: any(p["alert"]["pump_serial"] == "SN-FLOW" for p in hook.pages),
                       what="the flow page", timeout_s=30, interval_s=0.005, max_interval_s=0.02)
            handled_before_the_page = overdue_alerts()
            wait_until(lambda: overdue_alerts() == burst, what="the whole burst handled", timeout_s=60)
        finally:
            worker.stop()
            bus.close()
    # behind the burst in one queue, the page would come only after all 600
    assert handled_before_the_page < burst // 2, handled_before_the_page


def test_upgrading_the_broker_moves_flow_readings_off_the_old_queue(fresh_vhost: str) -> None:
    # an earlier release bound alerts.events to flow readings too; declaring this release's
    # queues must unbind it, or every reading would be handled through both queues
    import pika

    from services.alerts import handlers
    from shared.messaging.base import QueueSpec
    from shared.messaging.rabbit import RabbitBus

    bus = RabbitBus(fresh_vhost)
    try:
        bus.declare([QueueSpec(name=handlers.QUEUE, bindings=tuple(
            (EVENTS_EXCHANGE, t) for t in handlers.HANDLED_TYPES))])  # the earlier release
        bus.declare(list(handlers.queue_specs()))
        bus.declare(list(handlers.queue_specs()))  # again: unbinding what is gone is no error
        publish_flow(bus, "SN-UP")
    finally:
        bus.close()
    with pika.BlockingConnection(pika.URLParameters(fresh_vhost)) as conn:
        channel = conn.channel()
        depth = {name: channel.queue_declare(name, passive=True).method.message_count
                 for name in (handlers.QUEUE, handlers.FLOW_QUEUE)}
    assert depth == {handlers.QUEUE: 0, handlers.FLOW_QUEUE: 1}
