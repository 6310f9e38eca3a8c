"""Test harness: a real service app on a real database, tokens, and synchronous event delivery."""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from shared.auth import mint_token
from shared.clock import Clock, MovableClock
from shared.messaging.base import Outcome
from shared.messaging.consumer import EventConsumer
from shared.messaging.inproc import InProcessBus
from shared.messaging.relay import OutboxRelay
from shared.migrations import upgrade
from shared.runtime import ServiceRuntime
from shared.settings import DEV_JWT_SECRET, Settings


def auth(*roles: str, sub: str = "tester", secret: str = DEV_JWT_SECRET) -> dict[str, str]:
    """An Authorization header with a dev token carrying these roles."""
    return {"Authorization": f"Bearer {mint_token(sub, list(roles), secret=secret)}"}


def test_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for one test: SQLite files in tmp_path unless URLs are given."""
    values: dict[str, Any] = {
        "env": "test",
        "inventory_database_url": f"sqlite:///{tmp_path}/inventory.db",
        "scheduling_database_url": f"sqlite:///{tmp_path}/scheduling.db",
        "alerts_database_url": f"sqlite:///{tmp_path}/alerts.db",
        "amqp_url": None,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Harness:
    """One service: its runtime, and a TestClient on its app."""

    name: str
    runtime: ServiceRuntime
    client: TestClient

    @property
    def clock(self) -> Clock:
        return self.runtime.clock


def start_service(name: str, settings: Settings, *, clock: Clock | None = None,
                  bus: Any = None) -> Harness:
    """Migrate the service's database and build its app, with the given clock and bus."""
    upgrade(name, settings.database_url(name))
    module = importlib.import_module(f"services.{name}.app")
    runtime = module.bootstrap(settings, clock=clock or MovableClock(), bus=bus or InProcessBus())
    client = TestClient(module.create_app(runtime), raise_server_exceptions=False)
    return Harness(name, runtime, client)


def deliver(harnesses: Sequence[Harness], bus: InProcessBus, rounds: int = 20) -> list[Outcome]:
    """Relay every outbox and hand every waiting message to its consumer until all is quiet."""
    bus.declare([q for h in harnesses for q in h.runtime.all_queues()])
    outcomes: list[Outcome] = []
    for _ in range(rounds):
        moved = 0
        for h in harnesses:
            rt = h.runtime
            relay = OutboxRelay(rt.uow_factory, lambda: bus)
            while relay.run_once():
                moved += 1
        for h in harnesses:
            rt = h.runtime
            for sub in rt.subscriptions:
                consumer = EventConsumer(sub.queue.name, sub.queue, sub.handlers, rt.uow_factory,
                                         max_attempts=rt.settings.consumer_max_attempts,
                                         batch_handlers=sub.batch_handlers)
                batch = bus.take(sub.queue.name)
                if batch:
                    moved += 1
                    outcomes.extend(consumer.process(batch))
        if not moved:
            break
    return outcomes

def wait_until(predicate: Callable[[], Any], *, what: str, timeout_s: float = 10.0,
               interval_s: float = 0.02) -> Any:
    """Poll until predicate() is truthy and return it; fail naming what was awaited.

    Waits on an Event rather than time.sleep: the suite also runs under libfaketime, whose
    clock_nanosleep refuses Python's absolute monotonic sleeps."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up after {timeout_s:g} s waiting for {what}")
        pause.wait(interval_s)


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test
