"""Inventory's events observed on a real RabbitMQ, relayed from the PostgreSQL outbox."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pika
import pytest
from sqlalchemy import func, select

from shared.clock import MovableClock
from shared.messaging.base import QueueSpec
from shared.messaging.rabbit import RabbitBus
from shared.runtime import Worker
from tests import services as svc
from tests.factories import T0
from tests.helpers import Harness, auth, start_service, wait_until
from tests.helpers import test_settings as make_settings
from tests.integration.inventory.conftest import pg_url

BIOMED = auth("biomed", sub="bio")


@pytest.fixture
def on_rabbit(amqp_url: str, tmp_path: Any) -> Iterator[tuple[Harness, str]]:
    """Inventory on PostgreSQL publishing to RabbitMQ through its relay, plus an observer queue."""
    name, url = pg_url("inventory_rmq")
    settings = make_settings(tmp_path, inventory_database_url=url, amqp_url=amqp_url)
    bus = RabbitBus(amqp_url)
    observer = f"test.inventory-observer.{uuid.uuid4().hex[:8]}"
    bus.declare([QueueSpec(observer, bindings=(("hai.events", "hai.inventory.#"),))])
    harness = start_service("inventory", settings, clock=MovableClock(T0), bus=bus)
    worker = Worker(harness.runtime, consumers=False, jobs=False)
    worker.start()
    yield harness, observer
    worker.stop()
    bus.close()
    harness.runtime.engine.dispose()
    svc.drop_database(name)


Message = tuple[Any, Any, dict[str, Any]]


def _queue_depth(amqp_url: str, queue: str) -> int:
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()


def drain(amqp_url: str, queue: str, want: int, timeout_s: float = 15) -> list[Message]:
    """Read messages from the queue until `want` arrived (or the time is up)."""
    got: list[Message] = []
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = conn.channel()

        def more() -> bool:
            while True:
                method, props, body = channel.basic_get(queue, auto_ack=True)
                if method is None:
                    return len(got) >= want
                got.append((method, props, json.loads(body)))

        wait_until(more, what=f"{want} messages in {queue}", timeout_s=timeout_s)
    finally:
        conn.close()
    return got


def test_recall_and_lifecycle_events_arrive_on_rabbitmq(on_rabbit: tuple[Harness, str],
                                                       amqp_url: str) -> None:
    inv, observer = on_rabbit
    lot = f"RMQ-{uuid.uuid4().hex[:6]}"
    serials = []
    for i in range(2):
        body = {"serial_number": f"RMQ-{uuid.uuid4().hex[:6]}-{i}", "model_code": "DEMO-INTERA-3000",
                "lot_number": lot, "expiry_date": "2028-12-31"}
        assert inv.client.post("/v1/pumps", json=body, headers=BIOMED).status_code == 201
        serials.append(body["serial_number"])
    r = inv.client.post(f"/v1/pumps/{serials[0]}/implant", headers=auth("oncologist"), json={
        "patient_mrn": "MRN-RMQ", "center": "CTR-R", "implanted_at": (T0 - timedelta(days=1)).isoformat()})
    assert r.status_code == 200
    r = inv.client.post("/v1/recalls", headers=BIOMED, json={
        "model_code": "DEMO-INTERA-3000", "lot_numbers": [lot], "reason": "fast flow"})
    assert r.status_code == 201
    recall_id = r.json()["recall_id"]

    messages = drain(amqp_url, observer, want=5)
    assert [m.routing_key for m, _, _ in messages] == [
        "hai.inventory.pump.registered", "hai.inventory.pump.registered",
        "hai.inventory.pump.implanted", "hai.inventory.pump.status_changed",
        "hai.inventory.recall.issued"]
    # nothing more: every outbox row is published and the queue is empty. The relay marks rows
    # published once the broker confirms them, which may come after the observer got them
    outbox = inv.runtime.platform.outbox

    def unpublished() -> int:
        with inv.runtime.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(outbox)
                                    .where(outbox.c.published_at.is_(None))).scalar_one())

    wait_until(lambda: unpublished() == 0, what="every outbox row marked published")
    assert _queue_depth(amqp_url, observer) == 0
    for method, props, event in messages:
        assert method.exchange == "hai.events"
        assert method.routing_key == event["type"]
        assert props.content_type == "application/cloudevents+json"
        assert props.message_id == event["id"] and props.delivery_mode == 2
        assert event["specversion"] == "1.0" and event["source"] == "/hai/inventory"
    recall = next(e for _, _, e in messages if e["type"] == "hai.inventory.recall.issued")
    assert recall["subject"] == recall_id
    assert recall["data"]["quarantined"] == [serials[1]]
    assert recall["data"]["implanted"] == [{"serial_number": serials[0], "patient_mrn": "MRN-RMQ",
                                            "center": "CTR-R"}]
    implanted = next(e for _, _, e in messages if e["type"] == "hai.inventory.pump.implanted")
    assert implanted["data"]["center"] == "CTR-R" and implanted["data"]["reservoir_ml"] == 30.0
