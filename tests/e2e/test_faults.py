"""Faults on the production topology. Each test counts what was lost and what took effect
twice; both must be 0. A stream here is one abnormal refill per pump; each must end as exactly
one `flow_abnormal` alert raised once (occurrences 1) in the alerts service."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from urllib.parse import unquote, urlparse

import httpx
import pika
import pytest
from sqlalchemy import create_engine, text

from tests.doubles import WebhookReceiver
from tests.e2e.story import abnormal_refill, pump_on_therapy, setup_oncall
from tests.e2e.topology import SERVICES, Topology, topology
from tests.helpers import TRANSIENT, wait_until
from tests.private_services import private_postgresql, private_rabbitmq
from tests.services import rabbitmqctl

PUMPS = 8


def _prepare(system: Topology, receiver: WebhookReceiver, center: str,
             count: int = PUMPS) -> dict[str, float]:
    setup_oncall(system, center, receiver.url_for(f"/{center}/l1"))
    return {f"SN-{center}-{i:02d}": pump_on_therapy(system, f"SN-{center}-{i:02d}",
                                                   f"MRN-{center}-{i:02d}", center)
            for i in range(count)}


def _flow_alerts(system: Topology, center: str) -> list[dict]:
    with system.client("alerts", "nurse") as alerts:
        items, cursor = [], None
        while True:
            params = {"kind": "flow_abnormal", "center": center, "limit": 500}
            if cursor:
                params["cursor"] = cursor
            page = alerts.get("/v1/alerts", params=params).json()
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items


def _unpublished(system: Topology) -> int:
    """Outbox rows not yet on the broker, over the three services."""
    total = 0
    for service in SERVICES:
        engine = create_engine(system.env[f"HAI_{service.upper()}_DATABASE_URL"])
        try:
            with engine.connect() as conn:
                total += conn.execute(text(
                    "SELECT count(*) FROM outbox WHERE published_at IS NULL")).scalar_one()
        finally:
            engine.dispose()
    return total


def _lost_and_twice(system: Topology, center: str, pumps: dict[str, float],
                    ctl: Ctl | None = None) -> tuple[int, int]:
    wait_until(lambda: len(_flow_alerts(system, center)) >= len(pumps),
        what=f"{len(pumps)} flow alerts in {center}", timeout_s=90, ignoring=TRANSIENT)
    # anything that would arrive twice has had its chance once nothing is left to deliver: every
    # outbox published, every consumed queue (retry queues too) empty and acked. Not the dead
    # letters, nor the pharmacy's orders (the pharmacy system reads those; none runs here)
    wait_until(lambda: (
        _unpublished(system) == 0 and not any(
            n for q, n in _queue_counts(system, ctl).items()
            if not q.endswith(".dlq") and q != "pharmacy.orders")),
                what="every outbox published and every consumed queue drained", timeout_s=90,
                ignoring=TRANSIENT)
    alerts = _flow_alerts(system, center)
    seen = {a["pump_serial"] for a in alerts}
    lost = len(set(pumps) - seen)
    twice = sum(a["occurrences"] - 1 for a in alerts) + (len(alerts) - len(seen))
    return lost, twice


def test_worker_killed_mid_batch_loses_nothing(system: Topology, receiver: WebhookReceiver):
    center = "F-KILL"
    pumps = _prepare(system, receiver, center)
    for serial, labeled in pumps.items():
        abnormal_refill(system, serial, labeled, days_ago=0, elapsed_days=14)
    # flow readings are consumed by alerts' flow worker (deploy/Procfile's alerts_flow)
    for name in ("scheduling_worker_1", "alerts_flow"):
        system.procs[name].kill(signal.SIGKILL)  # returns once the process is gone
    for name in ("scheduling_worker_1", "alerts_flow"):
        system.start(name)
    assert _lost_and_twice(system, center, pumps) == (0, 0)


def _vhost_of(system: Topology) -> str:
    return unquote(urlparse(system.env["HAI_AMQP_URL"].split(",")[0]).path.lstrip("/")) or "/"


Ctl = Callable[..., subprocess.CompletedProcess[str]]


def _queue_counts(system: Topology, ctl: Ctl | None = None) -> dict[str, int]:
    """Messages (ready and unacknowledged) per queue, on the machine's broker or on `ctl`'s node."""
    args = ("list_queues", "-p", _vhost_of(system), "name", "messages", "--quiet",
            "--no-table-headers")
    out = (ctl or rabbitmqctl)(*args).stdout
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


MALFORMED = [
    b"not json at all",
    b"[1,2,3]",
    json.dumps({"hello": "world"}).encode(),
    json.dumps({"specversion": "1.0", "id": "x", "source": "/s", "type": "hai.nobody.knows"}).encode(),
    json.dumps({"specversion": "1.0", "id": "y", "source": "/s",
                "type": "hai.scheduling.flow.recorded", "data": {"pump_serial": 42}}).encode(),
]


def test_a_thousand_malformed_messages_per_queue_are_dead_lettered(system: Topology,
                                                                    receiver: WebhookReceiver):
    center = "F-JUNK"
    pumps = _prepare(system, receiver, center)
    consumed = [q for q in _queue_counts(system)
                if not q.endswith((".dlq", ".retry")) and q != "pharmacy.orders"]
    assert consumed, "no consumed queues found"
    before = _queue_counts(system)
    conn = pika.BlockingConnection(pika.URLParameters(system.env["HAI_AMQP_URL"]))
    ch = conn.channel()
    ch.confirm_delivery()
    for queue in consumed:
        for i in range(1000):
            body = MALFORMED[i % len(MALFORMED)]
            if b'"id": "x"' in body or b'"id": "y"' in body:
                body = body.replace(b'"id": "', f'"id": "{queue}-{i}-'.encode())
            ch.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
    conn.close()
    for serial, labeled in pumps.items():  # good messages flow meanwhile
        abnormal_refill(system, serial, labeled, days_ago=0, elapsed_days=14)
    for queue in consumed:
        wait_until(lambda q=queue: _queue_counts(system).get(
            f"{q}.dlq", 0) - before.get(f"{q}.dlq", 0) >= 1000,
                what=f"1000 dead letters in {queue}.dlq", timeout_s=120, ignoring=TRANSIENT)
    assert _lost_and_twice(system, center, pumps) == (0, 0)
    # the reason travels with each dead letter
    conn = pika.BlockingConnection(pika.URLParameters(system.env["HAI_AMQP_URL"]))
    ch = conn.channel()
    method, props, _ = ch.basic_get(f"{consumed[0]}.dlq")
    assert method is not None and props.headers.get("x-hai-dlq-reason")
    conn.close()
    for name, proc in system.procs.items():
        assert proc.alive(), f"{name} died"


def _own_topology(amqp_url: str, db_urls: dict[str, str], label: str):
    return topology(amqp_url, db_urls, label=label)


@pytest.mark.broker_stop
def test_rabbitmq_stopped_and_started_mid_stream(tmp_path, pg_database, receiver: WebhookReceiver):
    """On a RabbitMQ node of this test's own (the machine's broker is never stopped)."""
    center = "F-RMQ"
    dbs = {s: pg_database(f"faults_rmq_{s}") for s in SERVICES}
    with private_rabbitmq(tmp_path) as rabbit, \
            _own_topology(rabbit.url, dbs, "faults-rmq") as system:
        pumps = _prepare(system, receiver, center)
        serials = list(pumps)
        half = len(serials) // 2
        for serial in serials[:half]:
            abnormal_refill(system, serial, pumps[serial], days_ago=0, elapsed_days=14)
        rabbit.stop_app()
        try:
            for serial in serials[half:]:  # the APIs keep taking refills: the outbox holds them
                abnormal_refill(system, serial, pumps[serial], days_ago=0, elapsed_days=14)
        finally:
            rabbit.start_app()
        assert _lost_and_twice(system, center, pumps, rabbit.ctl) == (0, 0)


@pytest.mark.broker_stop
def test_postgresql_restarted_apis_answer_503_then_recover(fresh_vhost: str,
                                                           receiver: WebhookReceiver):
    """On a PostgreSQL cluster of this test's own (the machine's database is never stopped)."""
    center = "F-PG"
    with private_postgresql() as pg:
        dbs = {s: pg.create_database(f"faults_pg_{s}") for s in SERVICES}
        with _own_topology(fresh_vhost, dbs, "faults-pg") as system:
            pumps = _prepare(system, receiver, center)
            pg.stop()
            try:
                with system.client("inventory", "nurse") as inv:
                    r = inv.get("/v1/pump-models")
                    assert r.status_code == 503
                    assert r.headers["content-type"].startswith("application/problem+json")
                assert httpx.get(system.url("scheduling") + "/readyz", timeout=10).status_code == 503
            finally:
                pg.start()
            wait_until(lambda: httpx.get(
                system.url("scheduling") + "/readyz", timeout=5).status_code == 200,
                    what="the APIs to recover", timeout_s=60, ignoring=TRANSIENT)
            for serial, labeled in pumps.items():
                abnormal_refill(system, serial, labeled, days_ago=0, elapsed_days=14)
            assert _lost_and_twice(system, center, pumps) == (0, 0)
