"""Test harness: a real service app on a real database, tokens, and synchronous event delivery."""

from __future__ import annotations

import asyncio
import importlib
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from fastapi.testclient import TestClient

from services.settings import HaiSettings
from shared.auth import mint_token
from shared.clock import Clock, MovableClock
from shared.contracts.registry import urgent_types
from shared.events import EVENTS_EXCHANGE, CloudEvent
from shared.messaging.base import Outcome, OutgoingMessage
from shared.messaging.consumer import EventConsumer
from shared.messaging.inproc import InProcessBus
from shared.messaging.relay import OutboxRelay
from shared.migrations import upgrade
from shared.runtime import ServiceRuntime
from shared.settings import DEV_JWT_SECRET
from tests.factories import T0

T = TypeVar("T")


def auth(*roles: str, sub: str = "tester", secret: str = DEV_JWT_SECRET,
         centers: list[str] | None = None) -> dict[str, str]:
    """An Authorization header with a dev token carrying these roles (and these centres; None:
    no `centers` claim, every centre outside production)."""
    token = mint_token(sub, list(roles), secret=secret, centers=centers)
    return {"Authorization": f"Bearer {token}"}


def test_settings(tmp_path: Path, **overrides: Any) -> HaiSettings:
    """Settings (every service's section) for one test: SQLite files in tmp_path unless URLs
    are given."""
    values: dict[str, Any] = {
        "env": "test",
        "inventory_database_url": f"sqlite:///{tmp_path}/inventory.db",
        "scheduling_database_url": f"sqlite:///{tmp_path}/scheduling.db",
        "alerts_database_url": f"sqlite:///{tmp_path}/alerts.db",
        "amqp_url": None,
    }
    values.update(overrides)
    return HaiSettings(**values)


@dataclass
class Harness:
    """One service: its runtime, and a TestClient on its app."""

    name: str
    runtime: ServiceRuntime
    client: TestClient

    @property
    def clock(self) -> Clock:
        return self.runtime.clock


def start_service(name: str, settings: HaiSettings, *, clock: Clock | None = None,
                  bus: Any = None) -> Harness:
    """Migrate the service's database and build its app, with the given clock and bus."""
    upgrade(name, settings.database_url(name))
    module = importlib.import_module(f"services.{name}.app")
    runtime = module.bootstrap(settings, clock=clock or MovableClock(), bus=bus or InProcessBus())
    client = TestClient(module.create_app(runtime), raise_server_exceptions=False)
    return Harness(name, runtime, client)


def start(name: str, settings: HaiSettings, clock: Clock | None = None,
          bus: Any = None) -> tuple[Harness, Any]:
    """The service on its own database with a movable clock at T0 and an in-process bus (or
    the ones given), its queues declared on that bus: (harness, bus)."""
    bus = InProcessBus() if bus is None else bus
    harness = start_service(name, settings, clock=clock or MovableClock(T0), bus=bus)
    bus.declare(harness.runtime.all_queues())
    return harness, bus


def publish(bus: Any, event_type: str, data: Any, *, exchange: str = EVENTS_EXCHANGE,
            subject: str | None = None, event_id: str | None = None,
            time: datetime | None = None, source: str = "/test") -> CloudEvent:
    """Publish an event on the bus as its producer would (not yet handled: see `deliver`)."""
    event = CloudEvent.create(source=source, type=event_type, data=data, subject=subject,
                              id=event_id, time=time)
    bus.publish_batch([OutgoingMessage(message_id=event.id, exchange=exchange,
                                       routing_key=event_type, body=event.to_json_bytes())])
    return event


def emit(harness: Harness, bus: InProcessBus, event_type: str, data: Any, *,
         subject: str | None = None, event_id: str | None = None) -> CloudEvent:
    """Publish an event as its producer would, at the service's clock time, and let the
    service's consumers handle it: every message handled must be acked."""
    bus.declare(harness.runtime.all_queues())
    event = publish(bus, event_type, data, subject=subject, event_id=event_id,
                    time=harness.runtime.clock.now())
    outcomes = deliver([harness], bus)
    refused = [o for o in outcomes if o.action != "ack"]
    assert not refused, refused
    return event


def deliver(harnesses: Sequence[Harness], bus: InProcessBus, rounds: int = 20) -> list[Outcome]:
    """Relay every outbox and hand every waiting message to its consumer until all is quiet."""
    bus.declare([q for h in harnesses for q in h.runtime.all_queues()])
    outcomes: list[Outcome] = []
    for _ in range(rounds):
        moved = 0
        for h in harnesses:
            rt = h.runtime
            relay = OutboxRelay(rt.uow_factory, lambda: bus,
                                first=[t.value for t in urgent_types(rt.name)])
            while relay.run_once():
                moved += 1
        for h in harnesses:
            rt = h.runtime
            for sub in rt.subscriptions:
                consumer = EventConsumer(sub.queue.name, sub.queue, sub.handlers, rt.uow_factory,
                                         max_attempts=rt.settings.consumer_max_attempts,
                                         batch_handlers=sub.batch_handlers,
                                         prepare=sub.prepare)
                batch = bus.take(sub.queue.name)
                if batch:
                    moved += 1
                    outcomes.extend(consumer.process(batch))
        if not moved:
            break
    return outcomes

# what a probe of a running system may raise while it starts, restarts or recovers (refused
# connections, a 503's body without the expected keys): for wait_until's `ignoring`
TRANSIENT: tuple[type[BaseException], ...] = (Exception,)


def wait_until(predicate: Callable[[], Any], *, what: str, timeout_s: float = 10.0,
               interval_s: float = 0.02, max_interval_s: float = 0.25,
               ignoring: tuple[type[BaseException], ...] = ()) -> Any:
    """Poll until predicate() is truthy and return it; fail naming what was awaited and the
    last thing seen (a value, or one of the `ignoring` errors, which mean "not yet": a service
    still starting refuses connections). The pause between polls starts at `interval_s` and
    grows to `max_interval_s`: quick for what is nearly there, light on a slow system.

    Waits on an Event rather than time.sleep: the suite also runs under libfaketime, whose
    clock_nanosleep refuses Python's absolute monotonic sleeps."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    last: Any = None
    while True:
        try:
            last = predicate()
        except ignoring as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up after {timeout_s:g} s waiting for {what}; "
                                 f"last: {last!r:.500}")
        pause.wait(interval_s)
        interval_s = min(interval_s * 1.5, max(max_interval_s, interval_s))


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def run_async(awaitable: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end on a fresh event loop in a thread of its own.

    `asyncio.run` here would refuse when a test before it in this process left a running loop
    in the main thread: Playwright's sync API keeps one there while the browser fixture lives."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-async") as pool:
        return pool.submit(asyncio.run, awaitable).result()
