"""Tools of the race tests: a service on PostgreSQL (served behind a real uvicorn in this process
by tests.doubles.running_server: one event loop, one request threadpool, as in production), many
requests released at one moment, and the service's log output captured as the production
pipelines render it."""

from __future__ import annotations

import importlib
import io
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import structlog
from fastapi.testclient import TestClient

from shared.clock import MovableClock
from shared.db import make_engine
from shared.events import EventType
from shared.logging import log_processors, stdlib_formatter
from shared.messaging.inproc import InProcessBus
from shared.migrations import upgrade
from shared.settings import Settings
from tests.factories import T0, flow_recorded
from tests.helpers import Harness, emit
from tests.helpers import test_settings as settings_for
from tests.integration.alerts.alerts_testkit import NURSE

N = 50  # requests released together, as in the probes of issue 16


def start_on_pg(name: str, settings: Settings, clock: MovableClock, bus: InProcessBus, *,
                pool_size: int = 5, max_overflow: int = 5) -> Harness:
    """The service on its PostgreSQL database with a small pool (the machine's PostgreSQL is
    shared; a pool far smaller than the burst also makes requests queue for connections)."""
    url = settings.database_url(name)
    upgrade(name, url)
    module = importlib.import_module(f"services.{name}.app")
    engine = make_engine(url, pool_size=pool_size, max_overflow=max_overflow,
                         pool_timeout=settings.db_pool_timeout_seconds)
    runtime = module.bootstrap(settings, clock=clock, bus=bus, engine=engine)
    bus.declare(runtime.all_queues())
    return Harness(name, runtime, TestClient(module.create_app(runtime),
                                             raise_server_exceptions=False))


def at_once(base_url: str, method: str, path: str | Callable[[int], str], *,
            headers: dict[str, str], body: Any | Callable[[int], Any] = None,
            n: int = N) -> list[httpx.Response]:
    """Send `n` requests from `n` threads, each on a connection already open, released by one
    barrier; `path` and `body` may depend on the request's index."""
    answers: list[httpx.Response] = []
    failures: list[BaseException] = []
    barrier = threading.Barrier(n)
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            with httpx.Client(base_url=base_url, timeout=120) as client:
                client.get("/healthz")  # the connection is open before the barrier opens
                barrier.wait()
                r = client.request(method, path(i) if callable(path) else path, headers=headers,
                                   json=body(i) if callable(body) else body)
            with lock:
                answers.append(r)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            with lock:
                failures.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    return answers


def statuses(answers: list[httpx.Response]) -> Counter[int]:
    """How many answers of each status."""
    return Counter(r.status_code for r in answers)


@dataclass
class CapturedLogs:
    """What the structlog and stdlib loggers wrote while capturing, rendered as in production."""

    buffer: io.StringIO

    @property
    def text(self) -> str:
        return self.buffer.getvalue()


@contextmanager
def production_logs() -> Iterator[CapturedLogs]:
    """Route structlog and the stdlib root logger through the production processors and
    formatter (shared.logging) into a buffer, for the duration of the block."""
    buffer = io.StringIO()
    previous = structlog.get_config()
    structlog.configure(processors=log_processors(json_output=True),
                        logger_factory=structlog.PrintLoggerFactory(file=buffer),
                        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
                        cache_logger_on_first_use=False)
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(stdlib_formatter(json_output=True))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield CapturedLogs(buffer)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        structlog.configure(**previous)


def alerts_with_a_firing_alert(tmp_path: Path, url: str, **overrides: Any) -> tuple[Harness, str]:
    """Alerts on PostgreSQL with one firing alert; returns the harness and the alert's id."""
    bus = InProcessBus()
    pool = {k: overrides.pop(k) for k in ("pool_size", "max_overflow") if k in overrides}
    h = start_on_pg("alerts", settings_for(tmp_path, alerts_database_url=url, **overrides),
                    MovableClock(T0), bus, **pool)
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded())
    [alert] = h.client.get("/v1/alerts", headers=NURSE).json()["items"]
    assert alert["status"] == "firing"
    return h, alert["id"]
