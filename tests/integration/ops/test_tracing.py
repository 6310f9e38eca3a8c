"""One trace from the nurse's POST /v1/refills to the on-call's webhook page: the request's
span, the outbox (the event carries the W3C traceparent, the CloudEvents distributed-tracing
extension), the broker, the alerts consumer and the page (its span, and the webhook's
`traceparent` header). Off (no provider), events carry no traceparent."""

from __future__ import annotations

import json
from collections.abc import Iterator
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
from shared.events import EventType
from shared.messaging.inproc import InProcessBus
from tests.helpers import Harness, auth, deliver, start_service, test_settings
from tests.integration.alerts.alerts_testkit import T0, oncall_body, webhook
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
    deliver([sch, alerts], bus)


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
