"""Relays wake across processes on PostgreSQL: an API's commit that wrote the outbox NOTIFYs the
service's channel (the outbox's trigger), and a worker's relay, listening, publishes the event at
once rather than at its next poll. The worker here polls every 30 s, so only the wake-up can
publish within seconds; and it wakes again after its listening connection was killed. One
listener per service listens at a time (an advisory lock); the others stand by and take over."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
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


def _listener_pids(engine: Engine, channel: str) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = :q"
        ), {"q": f'LISTEN "{channel}"'}).scalars())


@contextmanager
def _listeners(engine: Engine, services: Sequence[str]
               ) -> Iterator[list[tuple[OutboxListener, threading.Event]]]:
    """An `OutboxListener` per service named (as each worker process runs one), each running in
    a thread of its own with its own signal; with the event that stops each."""
    running = [(OutboxListener(engine, service, threading.Event()), threading.Event())
               for service in services]
    threads = [threading.Thread(target=listener.run, args=(stop,), daemon=True)
               for listener, stop in running]
    for thread in threads:
        thread.start()
    try:
        yield running
    finally:
        for _, stop in running:
            stop.set()
        for thread in threads:
            thread.join(5)
        assert not any(thread.is_alive() for thread in threads)


def _leader(listeners: Sequence[OutboxListener]) -> OutboxListener | None:
    """The one listener listening while the others stand by, if that is how things stand."""
    listening = [x for x in listeners if x.listening.is_set()]
    standing_by = [x for x in listeners if x.standing_by.is_set()]
    if len(listening) == 1 and len(standing_by) == len(listeners) - 1:
        return listening[0]
    return None


def _wakes_only(api: ServiceRuntime, leader: OutboxListener,
                listeners: Sequence[OutboxListener]) -> None:
    """An API's commit wakes the leader's relay and no other's. The signals are cleared first:
    a listener sets its own once as it becomes the leader."""
    for listener in listeners:
        listener.signal.clear()
    with api.uow_factory.begin() as uow:
        uow.publish_raw("toy.widget.created", {"id": 1, "name": "w", "volume_ml": 1})
    assert leader.signal.wait(WAKE_S), "the listening one was not woken"
    threading.Event().wait(0.3)  # a NOTIFY reaches all listeners at once: any other woken by now
    assert [x for x in listeners if x.signal.is_set()] == [leader]


@contextmanager
def _api_and_two_listeners(pg_database: Callable[[str], str], tmp_path: Path, name: str
                           ) -> Iterator[tuple[ServiceRuntime, Engine,
                                               list[tuple[OutboxListener, threading.Event]]]]:
    """The toy service's API (its outbox notifying) and two of its workers' listeners, one
    listening and one standing by; with an engine to look on."""
    url = pg_database(name)
    api_engine, worker_engine = make_engine(url), make_engine(url)
    try:
        api = toy_runtime(tmp_path, engine=api_engine)
        with api_engine.begin() as conn:
            create_outbox_notify(conn, "toy")
        with _listeners(worker_engine, ["toy", "toy"]) as running:
            wait_until(lambda: _leader([x for x, _ in running]),
                       what="one listening, one standing by")
            yield api, api_engine, running
    finally:
        api_engine.dispose()
        worker_engine.dispose()


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


def test_one_listener_of_a_service_listens_the_others_stand_by(
        pg_database: Callable[[str], str], tmp_path: Path) -> None:
    """Two workers of one service: one listens, the other stands by without LISTEN, so that an
    API's commit wakes one relay, not every worker's to claim nothing."""
    with _api_and_two_listeners(pg_database, tmp_path, "outbox_leader") as (api, engine, running):
        listeners = [listener for listener, _ in running]
        leader = _leader(listeners)
        assert leader is not None
        assert len(_listener_pids(engine, outbox_channel("toy"))) == 1
        _wakes_only(api, leader, listeners)
        threading.Event().wait(1.5)  # the standby retries the lock meanwhile, in vain
        assert _leader(listeners) is leader


def test_a_standby_takes_over_from_a_listener_gone(
        pg_database: Callable[[str], str], tmp_path: Path) -> None:
    """The lock goes with the listener's connection: broken, or its listener stopped (a worker
    gone), a standby (or the listener, reconnected) listens within seconds, and is woken."""
    channel = outbox_channel("toy")
    with _api_and_two_listeners(pg_database, tmp_path, "outbox_takeover") as (api, engine,
                                                                              running):
        listeners = [listener for listener, _ in running]
        (first,) = _listener_pids(engine, channel)
        with engine.connect() as conn:  # a connection lost (failover, a network fault)
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        wait_until(lambda: _listener_pids(engine, channel) not in ([], [first]),
                   what="a listener on a new connection")
        leader = wait_until(lambda: _leader(listeners), what="one listening again",
                            timeout_s=5.0)
        _wakes_only(api, leader, listeners)

        stops = {id(listener): stop for listener, stop in running}
        stops[id(leader)].set()  # its worker stops: the standby takes over at its next try
        standby = next(x for x in listeners if x is not leader)
        wait_until(standby.listening.is_set, what="the standby listening", timeout_s=5.0)
        assert not leader.listening.is_set() and not standby.standing_by.is_set()
        _wakes_only(api, standby, [standby])


def test_listeners_of_different_services_each_listen(pg_database: Callable[[str], str]) -> None:
    """One lock per channel: the listeners of two services on one database both listen."""
    url = pg_database("outbox_two_services")
    engine = make_engine(url)
    try:
        with _listeners(engine, ["toy", "other"]) as running:
            for listener, _ in running:
                wait_until(listener.listening.is_set, what=f"{listener.channel} listened on")
                assert not listener.standing_by.is_set()
            for listener, _ in running:
                listener.signal.clear()
            with engine.begin() as conn:
                for listener, _ in running:
                    conn.execute(text("SELECT pg_notify(:c, '')"), {"c": listener.channel})
            for listener, _ in running:
                assert listener.signal.wait(WAKE_S), f"{listener.channel}'s listener not woken"
    finally:
        engine.dispose()
