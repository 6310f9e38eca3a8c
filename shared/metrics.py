"""Metrics of the system itself, read at scrape time: outbox lag, queue depths, job heartbeats.

Request latency (`hai_http_request_seconds`) is measured in shared/web.py; consumer outcomes
(`hai_events_handled_total{consumer,outcome}`, outcome `retry` or `dead_letter` for failures)
and job runs in shared/runtime.py; page failures by channel in the alerts service.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import select

from shared.clock import ensure_utc
from shared.logging import safe_error

if TYPE_CHECKING:
    from shared.runtime import ServiceRuntime

log = structlog.get_logger(__name__)

QUEUE_POLL_SECONDS = 15.0


class SystemCollector(Collector):
    """Gauges computed when Prometheus scrapes (one indexed query; the rest from memory)."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rt = self.runtime
        lag = GaugeMetricFamily(
            "hai_outbox_lag_seconds",
            "Age of the oldest outbox row not yet published (0 when none; NaN when the "
            "database does not answer)")
        lag.add_metric([], outbox_lag_seconds(rt))
        yield lag
        depth = GaugeMetricFamily(
            "hai_queue_messages", "Messages ready in the service's queues (from the broker, "
            "refreshed by the worker)", labels=["queue"])
        dead = GaugeMetricFamily(
            "hai_queue_dead_letters", "Messages in the dead-letter queue of each of the "
            "service's queues (from the broker, refreshed by the worker)", labels=["queue"])
        for name, (ready, dead_letters) in sorted(rt.queue_depths.items()):
            depth.add_metric([name], ready)
            dead.add_metric([name], dead_letters)
        yield depth
        yield dead
        age = GaugeMetricFamily(
            "hai_job_last_success_age_seconds", "Seconds since each scheduled job of this "
            "process last succeeded (since the worker started, if never)", labels=["job_name"])
        now = rt.clock.now()
        for job, started in sorted(rt.jobs_started_at.items()):
            last = rt.job_last_ok_at.get(job, started)
            age.add_metric([job], max(0.0, (now - last).total_seconds()))
        yield age


def outbox_lag_seconds(runtime: ServiceRuntime) -> float:
    """Seconds since the oldest unpublished outbox row was written (0.0 when there is none)."""
    outbox = runtime.platform.outbox
    try:
        with runtime.engine.connect() as conn:
            # by seq, on the partial index of unpublished rows: no scan of the sent ones
            oldest: datetime | None = conn.execute(
                select(outbox.c.created_at).where(outbox.c.published_at.is_(None))
                .order_by(outbox.c.seq).limit(1)).scalar()
    except Exception as exc:  # noqa: BLE001 - a scrape must answer even when the database is down
        log.warning("metrics.outbox_lag_failed", error=safe_error(exc))
        return float("nan")
    if oldest is None:
        return 0.0
    return max(0.0, (runtime.clock.now() - ensure_utc(oldest)).total_seconds())


def refresh_queue_depths(runtime: ServiceRuntime) -> None:
    """Ask the broker how many messages wait in each queue of the service and in its DLQ."""
    measure = getattr(runtime.bus, "queue_depths", None)
    if measure is None:
        return
    names = [q.name for q in runtime.all_queues()]
    depths: dict[str, Any] = measure(names)
    runtime.queue_depths = {name: (int(depths.get(name, 0)), int(depths.get(f"{name}.dlq", 0)))
                            for name in names}


def watch_queues(runtime: ServiceRuntime, stop: threading.Event,
                 interval_s: float = QUEUE_POLL_SECONDS) -> None:
    """Refresh the queue depths every `interval_s` until stopped (a worker thread)."""
    while not stop.is_set():
        try:
            refresh_queue_depths(runtime)
        except Exception as exc:  # noqa: BLE001 - the broker may be away; try again later
            log.warning("metrics.queue_depths_failed", error=safe_error(exc))
        stop.wait(interval_s)
