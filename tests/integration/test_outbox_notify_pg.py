"""Relays wake across processes on PostgreSQL: an API's commit that wrote the outbox NOTIFYs the
service's channel (the outbox's trigger), and a worker's relay, listening, publishes the event at
once rather than at its next poll. The worker here polls every 30 s, so only the wake-up can
publish within seconds; and it wakes again after its listening connection was killed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url

from shared.clock import MovableClock
from shared.db import make_engine, outbox_channel
from shared.messaging.inproc import InProcessBus
from shared.messaging.relay import OutboxListener
from shared.migrations import create_outbox_notify
from shared.runtime import ServiceRuntime, Worker, build_runtime
from shared.settings import Settings
from tests.helpers import wait_until
from tests.unit.platform.toyservice import metadata, platform, toy_runtime

POLL_S = 30.0
# far below the poll: only a wake-up publishes this soon (typically a few ms; the machine is noisy)
WAKE_S = 3.0


def _unpublished(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(platform.outbox)
                                .where(platform.outbox.c.published_at.is_(None))).scalar_one())


def _listener_pid(engine: Engine, channel: str) -> int | None:
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = :q"
        ), {"q": f'LISTEN "{channel}"'}).scalar()


@contextmanager
def _worker(engine: Engine) -> Iterator[ServiceRuntime]:
    """The toy service's worker as `hai worker` runs it (another process's runtime: its own
    engine and outbox signal), with a 30 s poll."""
    rt = build_runtime(name="toy", settings=Settings(env="test", outbox_poll_seconds=POLL_S),
                       metadata=metadata, platform=platform, clock=MovableClock(),
                       bus=InProcessBus(), engine=engine)
    worker = Worker(rt, consumers=False, jobs=False)
    worker.start()
    try:
        assert [t.name for t in worker.threads] == ["toy-relay", "toy-outbox-listener"]
        yield rt
    finally:
        worker.stop()


def _published_after_commit(api: ServiceRuntime, worker_engine: Engine) -> float:
    """Commit one event on the API side; seconds until the worker's relay marked it sent."""
    with api.uow_factory.begin() as uow:
        uow.publish_raw("toy.widget.created", {"id": 1, "name": "w", "volume_ml": 1})
    committed = time.monotonic()
    wait_until(lambda: _unpublished(worker_engine) == 0, what="the event published",
               timeout_s=WAKE_S, interval_s=0.005, max_interval_s=0.02)
    return time.monotonic() - committed


def test_an_api_commit_wakes_another_process_relay(
        pg_database: Callable[[str], str], tmp_path: Path) -> None:
    url = pg_database("outbox_notify")
    api_engine, worker_engine = make_engine(url), make_engine(url)
    try:
        api = toy_runtime(tmp_path, engine=api_engine)  # the API process: its relay never runs
        with api_engine.begin() as conn:
            create_outbox_notify(conn, "toy")  # what each service's migration installs
        channel = outbox_channel("toy")
        with _worker(worker_engine):
            first = wait_until(lambda: _listener_pid(api_engine, channel),
                               what="the worker listening")
            print(f"published {_published_after_commit(api, worker_engine) * 1000:.0f} ms "
                  "after the commit")

            # a lost connection (failover, restart): the listener listens again by itself
            with api_engine.connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
            wait_until(lambda: _listener_pid(api_engine, channel) not in (None, first),
                       what="the worker listening on a new connection")
            print(f"after reconnecting: {_published_after_commit(api, worker_engine) * 1000:.0f}"
                  " ms")
    finally:
        api_engine.dispose()
        worker_engine.dispose()


def test_the_relay_keeps_polling_while_it_cannot_listen(
        pg_database: Callable[[str], str], tmp_path: Path) -> None:
    """No trigger, and a listener that cannot connect: the poll still publishes (the safety
    net); the listener keeps retrying without stopping anything."""
    url = pg_database("outbox_poll")
    engine = make_engine(url)
    try:
        api = toy_runtime(tmp_path, engine=engine)
        signal = threading.Event()
        listener = OutboxListener(create_engine(make_url(url).set(port=1)), "toy",
                                  signal, retry_max_seconds=0.2)
        stop = threading.Event()
        listening = threading.Thread(target=listener.run, args=(stop,), daemon=True)
        listening.start()
        rt = build_runtime(name="toy", settings=Settings(env="test", outbox_poll_seconds=0.2),
                           metadata=metadata, platform=platform, clock=MovableClock(),
                           bus=InProcessBus(), engine=engine)
        worker = Worker(rt, consumers=False, jobs=False)
        worker.start()
        try:
            with api.uow_factory.begin() as uow:
                uow.publish_raw("toy.widget.created", {"id": 1, "name": "w", "volume_ml": 1})
            wait_until(lambda: _unpublished(engine) == 0, what="the event published by the poll")
            assert not listener.listening.is_set() and listening.is_alive()
        finally:
            worker.stop()
            stop.set()
            listening.join(5)
        assert not listening.is_alive()
    finally:
        engine.dispose()


def test_a_worker_s_own_commits_wake_no_other_relay(
        pg_database: Callable[[str], str], tmp_path: Path) -> None:
    """A worker's relay publishes what its own process commits (woken in-process): its commits
    notify no one, so that the service's other relays do not each run a claim for them; an
    API's commits still do."""
    url = pg_database("outbox_quiet")
    api_engine, worker_engine = make_engine(url), make_engine(url)
    try:
        api = toy_runtime(tmp_path, engine=api_engine)
        with api_engine.begin() as conn:
            create_outbox_notify(conn, "toy")
        listening = OutboxListener(api_engine, "toy", threading.Event()).connect()
        with listening, _worker(worker_engine) as worker:
            listening.execute(f'LISTEN "{outbox_channel("toy")}"')
            with worker.uow_factory.begin() as uow:
                uow.publish_raw("toy.widget.created", {"id": 1, "name": "w", "volume_ml": 1})
            assert list(listening.notifies(timeout=1.0)) == []
            wait_until(lambda: _unpublished(worker_engine) == 0, what="its own relay published it")
            with api.uow_factory.begin() as uow:
                uow.publish_raw("toy.widget.created", {"id": 2, "name": "v", "volume_ml": 1})
            assert [n.channel for n in listening.notifies(timeout=2.0, stop_after=1)] == [
                outbox_channel("toy")]
    finally:
        api_engine.dispose()
        worker_engine.dispose()
