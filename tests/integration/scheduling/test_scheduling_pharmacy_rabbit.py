"""A pharmacy simulator on the real broker: it takes scheduling's order from `pharmacy.orders`
and answers with every status, duplicated and out of order, plus a malformed one and one for an
unknown order (those two end in the dead-letter queue with their reason)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from shared.clock import MovableClock
from shared.contracts.pharmacy import ORDERS_QUEUE, STATUS_QUEUE
from shared.events import EVENTS_EXCHANGE, PHARMACY_EXCHANGE, CloudEvent, EventType
from shared.messaging.base import HEADER_DLQ_REASON, Delivery, Outcome, OutgoingMessage
from shared.messaging.rabbit import DeadLetters, RabbitBus
from shared.runtime import Worker
from tests.factories import T0
from tests.helpers import start, wait_until
from tests.helpers import test_settings as settings_for
from tests.unit.scheduling.scheduling_support import NURSE, patient, therapy, worklist


def _msg(event_type: str, data: Any, exchange: str, event_id: str | None = None) -> OutgoingMessage:
    event = CloudEvent.create(source="/pharmacy-sim", type=event_type, data=data, id=event_id)
    return OutgoingMessage(message_id=event.id, exchange=exchange, routing_key=event_type,
                           body=event.to_json_bytes())


class PharmacySimulator:
    """Consumes `pharmacy.orders` and answers every order with a messy stream of statuses."""

    def __init__(self, bus: RabbitBus) -> None:
        self.bus = bus
        self.orders: list[dict[str, Any]] = []
        self._publisher: Any = None

    def process(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        for d in deliveries:
            event = json.loads(d.body)
            self.orders.append(event)
            if event["type"] == EventType.ORDER_REQUESTED:
                self._answer(event["data"]["order_id"])
        return [Outcome.ack() for _ in deliveries]

    def _answer(self, order_id: str) -> None:
        if self._publisher is None:
            self._publisher = self.bus.publisher()

        def status(name: str, minutes: float, **extra: Any) -> dict[str, Any]:
            return {"order_id": order_id, "status": name,
                    "at": (T0 + timedelta(minutes=minutes)).isoformat(), **extra}

        delivered = _msg(EventType.ORDER_STATUS, status("delivered", 5), PHARMACY_EXCHANGE)
        messages = [
            _msg(EventType.ORDER_STATUS, status("accepted", 1), PHARMACY_EXCHANGE),
            _msg(EventType.ORDER_STATUS, status("compounded", 2, lot="L42"), PHARMACY_EXCHANGE),
            _msg(EventType.ORDER_STATUS, status("compounded", 2, lot="L42"), PHARMACY_EXCHANGE),
            _msg(EventType.ORDER_STATUS, status("dispatched", 3), PHARMACY_EXCHANGE),
            _msg(EventType.ORDER_STATUS, status("accepted", 1.5), PHARMACY_EXCHANGE),  # late
            delivered,
            delivered,  # the very same message again
            _msg(EventType.ORDER_STATUS, {"order_id": order_id, "status": "teleported"},
                 PHARMACY_EXCHANGE),
            _msg(EventType.ORDER_STATUS, {**status("accepted", 1), "order_id": "ghost"},
                 PHARMACY_EXCHANGE),
        ]
        self._publisher.publish_batch(messages)


def test_pharmacy_simulator_on_rabbitmq(tmp_path: Path, fresh_vhost: str,
                                        pg_database: Callable[[str], str]) -> None:
    settings = settings_for(tmp_path, amqp_url=fresh_vhost,
                            scheduling_database_url=pg_database("scheduling"),
                            consumer_retry_delay_ms=200, outbox_poll_seconds=0.1)
    bus = RabbitBus(fresh_vhost, retry_delay_ms=200)
    dead_letters = DeadLetters(bus.connect)
    h, _ = start("scheduling", settings, MovableClock(T0), bus)  # type: ignore[arg-type]
    worker = Worker(h.runtime, jobs=False)
    stop = threading.Event()
    sim = PharmacySimulator(bus)
    try:
        worker.start()
        orders_queue = next(q for q in h.runtime.all_queues() if q.name == ORDERS_QUEUE)
        threading.Thread(target=bus.consume, args=(orders_queue, sim.process),
                         kwargs={"prefetch": 10, "stop": stop, "retry_delay_ms": 200},
                         daemon=True).start()
        patient(h)
        pub = bus.publisher()
        pub.publish_batch([_msg(EventType.PUMP_IMPLANTED, {
            "serial_number": "SN1", "model_code": "INTERA-3000", "reservoir_ml": 30,
            "labeled_flow_ml_per_day": 1.0, "status": "implanted", "patient_mrn": "MRN1",
            "center": "C1", "implanted_at": "2026-10-01T00:00:00Z"}, EVENTS_EXCHANGE)])
        pub.close()
        wait_until(lambda: h.client.get("/v1/pumps/SN1/flow-readings",
                                        headers=NURSE).status_code == 200,
                                            what="scheduling to learn the implant", timeout_s=20)
        therapy(h, start_on="2026-11-03")  # inside the lead time: ordered at once
        order_id = worklist(h)[0]["delivery_id"]

        def delivered() -> bool:
            d = h.client.get(f"/v1/deliveries/{order_id}", headers=NURSE).json()
            return d["status"] == "delivered" and len(d["history"]) == 6

        wait_until(delivered, what="the order to be delivered", timeout_s=30)
        wait_until(lambda: len(dead_letters.peek(STATUS_QUEUE)) == 2, what="two dead letters",
                   timeout_s=30)
        d = h.client.get(f"/v1/deliveries/{order_id}", headers=NURSE).json()
        assert [(x["status"], x["applied"]) for x in d["history"]] == [
            ("requested", True), ("accepted", True), ("compounded", True), ("dispatched", True),
            ("accepted", False), ("delivered", True)]
        assert d["lot"] == "L42"
        reasons = sorted(str(m.headers[HEADER_DLQ_REASON]) for m in dead_letters.peek(STATUS_QUEUE))
        assert any("unknown order_id 'ghost'" in r for r in reasons), reasons
        assert any("malformed" in r for r in reasons), reasons
        order = next(o for o in sim.orders if o["type"] == EventType.ORDER_REQUESTED)
        assert order["data"]["drugs"][0]["amount"] == 252.0
    finally:
        stop.set()
        worker.stop()
        bus.close()

