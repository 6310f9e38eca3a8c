"""One trace from the nurse's POST /v1/refills to the on-call's webhook page: the request's
span, the outbox (the event carries the W3C traceparent, the CloudEvents distributed-tracing
extension), the broker, the alerts consumer and the page (its span, and the webhook's
`traceparent` header). Off (no provider), events carry no traceparent."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select

from services.alerts import paging
from shared import tracing
from shared.clock import MovableClock
from shared.events import EVENTS_EXCHANGE, CloudEvent, EventType
from shared.messaging.base import OutgoingMessage
from shared.messaging.inproc import InProcessBus
from shared.messaging.rabbit import RabbitBus
from shared.runtime import Worker
from tests.doubles import webhook
from tests.factories import T0, oncall_body, pump_implanted
from tests.helpers import Harness, auth, deliver, start_service, test_settings, wait_until
from tests.unit.scheduling.scheduling_support import implant

ADMIN = auth("admin", sub="tracer")


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracing.use_provider(provider)
    yield spans
    tracing.use_provider(None)


def _system(tmp_path: Path) -> tuple[Harness, Harness, InProcessBus]:
    clock, bus = MovableClock(T0), InProcessBus()
    settings = test_settings(tmp_path, dashboard_url="http://dash.test")
    sch = start_service("scheduling", settings, clock=clock, bus=bus)
    alerts = start_service("alerts", settings, clock=clock, bus=bus)
    bus.declare([q for h in (sch, alerts) for q in h.runtime.all_queues()])
    return sch, alerts, bus


def _refill(sch: Harness, days_ago: int, residual_ml: float) -> None:
    r = sch.client.post("/v1/refills", headers=ADMIN, json={
        "pump_serial": "SN-T1", "performed_at": (T0 - timedelta(days=days_ago)).isoformat(),
        "residual_volume_ml": residual_ml, "fill_volume_ml": 30, "fill_type": "saline"})
    assert r.status_code == 201, r.text


def _prepare(sch: Harness, alerts: Harness, bus: InProcessBus, hook_url: str) -> None:
    implant(sch, bus, "SN-T1", "MRN-T1", center="north")
    _patient_therapy_oncall_first_fill(sch, alerts, hook_url)
    deliver([sch, alerts], bus)


def _patient_therapy_oncall_first_fill(sch: Harness, alerts: Harness, hook_url: str) -> None:
    """The patient, a saline therapy, the centre's on-call (a webhook) and the first fill."""
    for path, body in (("/v1/patients", {
            "mrn": "MRN-T1", "given_name": "Ada", "family_name": "Lovelace",
            "birth_date": "1960-05-01", "weight_kg": 70, "center": "north"}),
            ("/v1/therapies", {"patient_mrn": "MRN-T1", "pump_serial": "SN-T1",
                               "regimen": "saline_maintenance",
                               "start_on": (T0 - timedelta(days=30)).date().isoformat()})):
        r = sch.client.post(path, headers=ADMIN, json=body)
        assert r.status_code == 201, r.text
    r = alerts.client.put("/v1/oncall/north", headers=ADMIN,
                          json=oncall_body([("ann", "webhook", hook_url)]))
    assert r.status_code == 200, r.text
    _refill(sch, 28, 0)


def test_one_trace_from_the_refill_to_the_page(tmp_path: Path,
                                              exporter: InMemorySpanExporter) -> None:
    sch, alerts, bus = _system(tmp_path)
    with webhook() as hook:
        _prepare(sch, alerts, bus, hook.url)
        exporter.clear()
        _refill(sch, 14, 2)  # 28 mL in 14 days at a labeled 1 mL/day: a fast pump
        [request] = [s for s in exporter.get_finished_spans()
                     if s.kind.name == "SERVER" and "/v1/refills" in s.name]
        trace_id = request.context.trace_id

        outbox = sch.runtime.platform.outbox
        with sch.runtime.engine.connect() as conn:
            bodies = [json.loads(b) for b in conn.execute(
                select(outbox.c.body).where(outbox.c.published_at.is_(None))).scalars()]
        flow = [b for b in bodies if b["type"] == EventType.FLOW_RECORDED]
        assert flow and all(int(b["traceparent"].split("-")[1], 16) == trace_id for b in bodies)

        outcomes = deliver([sch, alerts], bus)
        assert all(o.action == "ack" for o in outcomes), outcomes
        facts = paging.sweep_once(alerts.runtime)
        assert facts["sent"] == 1, facts

    spans = exporter.get_finished_spans()
    consumed = [s for s in spans if s.name == "alerts.flow process"]
    assert consumed and all(s.context.trace_id == trace_id for s in consumed), consumed
    assert all(s.parent is not None for s in consumed)
    [page] = [s for s in spans if s.name == "page webhook"]
    assert page.context.trace_id == trace_id
    # the database work of the consumer is inside the trace too (SQLAlchemy's spans)
    assert any(s.context.trace_id == trace_id and s.attributes.get("db.system")
               for s in spans if s.parent is not None and s.parent.span_id in
               {c.context.span_id for c in consumed})
    [headers] = [{k.lower(): v for k, v in h.items()} for h, _ in hook.received]
    version, tid, span_id, _flags = headers["traceparent"].split("-")
    assert version == "00" and int(tid, 16) == trace_id
    assert int(span_id, 16) == page.context.span_id


def test_off_events_carry_no_traceparent(tmp_path: Path) -> None:
    assert not tracing.enabled()
    sch, alerts, bus = _system(tmp_path)
    with webhook() as hook:
        _prepare(sch, alerts, bus, hook.url)
        _refill(sch, 14, 2)
        outbox = sch.runtime.platform.outbox
        with sch.runtime.engine.connect() as conn:
            bodies = [json.loads(b) for b in conn.execute(select(outbox.c.body)).scalars()]
        assert bodies and not any("traceparent" in b for b in bodies)
        deliver([sch, alerts], bus)
        assert paging.sweep_once(alerts.runtime)["sent"] == 1
        assert "traceparent" not in {k.lower() for k in hook.received[0][0]}


def test_one_trace_from_the_refill_to_the_page_over_rabbitmq(
        tmp_path: Path, exporter: InMemorySpanExporter, fresh_vhost: str,
        pg_database: Callable[[str], str]) -> None:
    """The same chain through the real broker: the outbox relay and the consumers run in their
    worker threads, each service on PostgreSQL; the traceparent crosses RabbitMQ in the event."""
    clock = MovableClock(T0)
    settings = test_settings(tmp_path, dashboard_url="http://dash.test", amqp_url=fresh_vhost,
                             scheduling_database_url=pg_database("scheduling"),
                             alerts_database_url=pg_database("alerts"),
                             consumer_retry_delay_ms=200, outbox_poll_seconds=0.1)
    bus = RabbitBus(fresh_vhost, retry_delay_ms=200)
    sch = start_service("scheduling", settings, clock=clock, bus=bus)
    alerts = start_service("alerts", settings, clock=clock, bus=bus)
    workers = [Worker(h.runtime, jobs=False) for h in (sch, alerts)]
    try:
        for worker in workers:
            worker.start()
        implanted = CloudEvent.create(source="/test", type=EventType.PUMP_IMPLANTED, data=pump_implanted(
            "SN-T1", "MRN-T1"), subject="SN-T1")
        publisher = bus.publisher()
        publisher.publish_batch([OutgoingMessage(
            message_id=implanted.id, exchange=EVENTS_EXCHANGE, routing_key=implanted.type,
            body=implanted.to_json_bytes())])
        publisher.close()
        wait_until(lambda: sch.client.get("/v1/pumps/SN-T1/flow-readings",
                                          headers=ADMIN).status_code == 200,
                   what="scheduling to learn the implant from the broker", timeout_s=30)
        with webhook() as hook:
            _patient_therapy_oncall_first_fill(sch, alerts, hook.url)
            exporter.clear()
            _refill(sch, 14, 2)  # 28 mL in 14 days at a labeled 1 mL/day: a fast pump
            [request] = [s for s in exporter.get_finished_spans()
                         if s.kind.name == "SERVER" and "/v1/refills" in s.name]
            trace_id = request.context.trace_id
            wait_until(lambda: any(s.name == "alerts.flow process"
                                   and s.context.trace_id == trace_id
                                   for s in exporter.get_finished_spans()),
                       what="the alerts consumer's span of the refill's flow reading", timeout_s=30)
            wait_until(lambda: paging.sweep_once(alerts.runtime)["sent"] == 1 or hook.received,
                       what="the page of the flow alert", timeout_s=30)
        spans = exporter.get_finished_spans()
        [page] = [s for s in spans if s.name == "page webhook"]
        assert page.context.trace_id == trace_id
        [headers] = [{k.lower(): v for k, v in h.items()} for h, _ in hook.received]
        assert int(headers["traceparent"].split("-")[1], 16) == trace_id
    finally:
        for worker in workers:
            worker.stop()
