"""The system's own metrics move on /metrics: outbox lag, queue depth and dead letters, consumer
failures, job heartbeat age, page failures by channel (and, on RabbitMQ, the depths the broker
reports)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from services.alerts import paging
from services.alerts.channels import SendError
from shared.clock import MovableClock
from shared.events import EVENTS_EXCHANGE, EventType
from shared.messaging.base import OutgoingMessage, QueueSpec
from shared.messaging.inproc import InProcessBus
from shared.metrics import refresh_queue_depths
from shared.runtime import Worker
from tests.factories import T0, flow_recorded, oncall_body
from tests.helpers import Harness, auth, deliver, emit, start_service, test_settings, wait_until

ADMIN = auth("admin")


def sample(h: Harness, name: str, **labels: str) -> float | None:
    """The value of one series on the service's /metrics, None when absent."""
    r = h.client.get("/metrics")
    assert r.status_code == 200
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def test_outbox_lag_is_the_age_of_the_oldest_unsent_row(tmp_path: Path) -> None:
    clock = MovableClock(T0)
    bus = InProcessBus()
    h = start_service("scheduling", test_settings(tmp_path), clock=clock, bus=bus)
    assert sample(h, "hai_outbox_lag_seconds") == 0.0
    with h.runtime.uow_factory.begin() as uow:
        uow.publish_raw("hai.ops.test.first", {"n": 1})
    clock.advance(seconds=90)
    with h.runtime.uow_factory.begin() as uow:
        uow.publish_raw("hai.ops.test.second", {"n": 2})
    clock.advance(seconds=30)
    assert sample(h, "hai_outbox_lag_seconds") == 120.0  # the oldest row, not the newest
    deliver([h], bus)
    assert sample(h, "hai_outbox_lag_seconds") == 0.0


def test_queue_depth_dead_letters_consumer_failures_and_job_heartbeat(tmp_path: Path) -> None:
    clock = MovableClock(T0)
    bus = InProcessBus()
    h = start_service("scheduling", test_settings(tmp_path, sweep_interval_seconds=3600),
                      clock=clock, bus=bus)
    rt = h.runtime
    queue = rt.subscriptions[0].queue.name
    bus.declare(rt.all_queues())
    assert sample(h, "hai_job_last_success_age_seconds", job_name="sweep") is None  # no worker

    malformed = [OutgoingMessage(message_id=f"bad-{i}", exchange=EVENTS_EXCHANGE,
                                 routing_key=EventType.PUMP_IMPLANTED, body=b"{not json")
                 for i in range(3)]
    bus.publish_batch(malformed)
    refresh_queue_depths(rt)
    assert sample(h, "hai_queue_messages", queue=queue) == 3.0
    assert sample(h, "hai_queue_dead_letters", queue=queue) == 0.0

    worker = Worker(rt, relay=False)
    worker.start()
    try:
        wait_until(lambda: len(bus.dead_letters[queue]) == 3, what="three dead letters")
        wait_until(lambda: "sweep" in rt.job_last_ok_at, what="the first sweep", timeout_s=20)
        refresh_queue_depths(rt)
        assert sample(h, "hai_queue_messages", queue=queue) == 0.0
        assert sample(h, "hai_queue_dead_letters", queue=queue) == 3.0
        assert sample(h, "hai_events_handled_total", consumer=queue,
                      outcome="dead_letter") == 3.0
        assert sample(h, "hai_job_last_success_age_seconds", job_name="sweep") == 0.0
        clock.advance(seconds=400)
        assert sample(h, "hai_job_last_success_age_seconds", job_name="sweep") == 400.0
    finally:
        worker.stop()


class _Down:
    """A channel whose every send fails."""

    def send(self, page: object) -> None:
        raise SendError("connection refused")


def test_page_failures_are_counted_by_channel(tmp_path: Path) -> None:
    bus = InProcessBus()
    h = start_service("alerts", test_settings(tmp_path, page_max_attempts=2,
                                              page_first_retry_seconds=1.0),
                      clock=MovableClock(T0), bus=bus)
    assert sample(h, "hai_page_failures_total", channel="webhook", result="retrying") is None
    r = h.client.put("/v1/oncall/north", headers=ADMIN, json=oncall_body(
        [("ann", "webhook", "http://pager.invalid/hook")], [("bob", "log", "bob")]))
    assert r.status_code == 200, r.text
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(mrn="MRN-P1"))
    paging.pager(h.runtime).channels = _Down()
    assert paging.sweep_once(h.runtime)["retrying"] == 1
    assert sample(h, "hai_page_failures_total", channel="webhook", result="retrying") == 1.0
    h.runtime.clock.advance(seconds=5)  # type: ignore[attr-defined]
    assert paging.sweep_once(h.runtime)["failed"] == 1
    assert sample(h, "hai_page_failures_total", channel="webhook", result="failed") == 1.0
    assert sample(h, "hai_page_failures_total", channel="log", result="failed") is None


def test_rabbitmq_reports_queue_and_dead_letter_depths(fresh_vhost: str) -> None:
    from shared.messaging.rabbit import RabbitBus

    bus = RabbitBus(fresh_vhost)
    spec = QueueSpec("ops.depth", ((EVENTS_EXCHANGE, "ops.#"),))
    try:
        bus.declare([spec])
        bus.publisher().publish_batch([
            OutgoingMessage(message_id=f"m{i}", exchange=EVENTS_EXCHANGE, routing_key="ops.x",
                            body=b"{}") for i in range(4)])
        depths = wait_until(lambda: (d := bus.queue_depths(["ops.depth", "ops.absent"]))
                            .get("ops.depth") == 4 and d, what="four messages in ops.depth")
        assert depths == {"ops.depth": 4, "ops.depth.dlq": 0}  # an absent queue is left out
    finally:
        bus.close()

