"""A service assembled once: settings, clock, database, bus, consumers, jobs (its bootstrap)."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import Engine, MetaData

from shared import tracing
from shared.clock import Clock, SystemClock
from shared.contracts.registry import urgent_types
from shared.db import PlatformTables, UnitOfWorkFactory, make_engine, ping, relay_in_this_process
from shared.logging import safe_error
from shared.messaging.base import Bus, Outcome, QueueSpec
from shared.messaging.consumer import BatchHandler, EventConsumer, Handler, Prepare
from shared.messaging.inproc import InProcessBus
from shared.messaging.relay import OutboxListener, OutboxRelay
from shared.metrics import SystemCollector, watch_queues
from shared.settings import Settings

log = structlog.get_logger(__name__)

P = TypeVar("P")
# the urgent lane's batch: a reading at a time, rarely more (shared.runtime.Worker.urgent_lane)
URGENT_LANE_BATCH = 50
# a service's settings: the platform's and its own section (services/<name>/settings.py)
SettingsT = TypeVar("SettingsT", bound=Settings)

_inproc_bus: Any = None
_inproc_lock = threading.Lock()


def make_bus(settings: Settings) -> Bus:
    """RabbitMQ when `HAI_AMQP_URL` is set, else the process's one in-process bus."""
    global _inproc_bus
    if settings.amqp_url:
        from shared.messaging.rabbit import RabbitBus

        return RabbitBus(settings.amqp_url, heartbeat_seconds=settings.amqp_heartbeat_seconds,
                         retry_delay_ms=settings.consumer_retry_delay_ms)
    with _inproc_lock:
        if _inproc_bus is None:
            from shared.messaging.inproc import InProcessBus

            _inproc_bus = InProcessBus()
        return _inproc_bus  # type: ignore[no-any-return,unused-ignore]


@dataclass
class Subscription:
    """A queue this service consumes, with a handler per event type."""

    queue: QueueSpec
    handlers: Mapping[str, Handler]
    batch_handlers: Mapping[str, BatchHandler] = field(default_factory=dict)
    # called with each transaction's events before they are handled (EventConsumer's)
    prepare: Prepare | None = None
    # consumers of the queue in each worker, each on its own connection and transactions: a
    # queue whose handling waits on the database most of the time drains faster with several
    # (its events' order is not kept, as with several workers; only where no handler needs it)
    consumers: int = 1
    # the most deliveries one transaction of this queue's consumers handles (None: the service's
    # HAI_CONSUMER_PREFETCH); a queue whose handlers lock rows others wait for takes small ones
    batch: int | None = None


@dataclass
class Job:
    """A periodic job: `run(runtime)` returns facts for the log (and the heartbeat)."""

    name: str
    run: Callable[[ServiceRuntime], dict[str, Any]]
    interval_seconds: float
    # run only by workers that consume one of these queues (None: by every worker)
    queues: frozenset[str] | None = None


@dataclass
class ServiceRuntime(Generic[SettingsT]):
    """Everything one service needs at run time, wired once and handed to routes and workers."""

    name: str
    settings: SettingsT
    clock: Clock
    engine: Engine
    metadata: MetaData
    platform: PlatformTables
    uow_factory: UnitOfWorkFactory
    bus: Bus
    subscriptions: list[Subscription] = field(default_factory=list)
    declared_queues: list[QueueSpec] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    readiness_checks: list[Callable[[ServiceRuntime], str | None]] = field(default_factory=list)
    job_last_ok: dict[str, float] = field(default_factory=dict)
    # for /metrics (shared/metrics.py): on the service's clock; queue → (ready, dead letters)
    job_last_ok_at: dict[str, datetime] = field(default_factory=dict)
    jobs_started_at: dict[str, datetime] = field(default_factory=dict)
    queue_depths: dict[str, tuple[int, int]] = field(default_factory=dict)

    # set when the runtime is built: readiness checks give background work time to start
    started_at: datetime = field(init=False)
    _parts: dict[type[Any], Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.started_at = self.clock.now()
        self.events_handled = Counter(
            "hai_events_handled_total", "Consumed events by outcome", ["consumer", "outcome"],
            registry=self.registry)
        self.events_published = Counter(
            "hai_events_published_total", "Events relayed from the outbox to the broker",
            registry=self.registry)
        self.outbox_backlog = Gauge(
            "hai_outbox_backlog", "Outbox rows not yet published", registry=self.registry)
        self.job_runs = Counter(
            "hai_job_runs_total", "Scheduled job runs by result", ["job", "result"],
            registry=self.registry)
        self.registry.register(SystemCollector(self))

    def attach(self, part: P) -> P:
        """Give the runtime a service's own typed state (e.g. alerts' pager), one per type;
        shared/ knows no service, so the service defines the type and `part` finds it."""
        self._parts[type(part)] = part
        return part

    def part(self, kind: type[P]) -> P:
        """The object of this type the service's bootstrap attached."""
        try:
            return cast(P, self._parts[kind])
        except KeyError:
            raise LookupError(f"the {self.name} runtime has no {kind.__name__}: its bootstrap "
                              "attaches it") from None

    def all_queues(self) -> list[QueueSpec]:
        return [s.queue for s in self.subscriptions] + list(self.declared_queues)

    def check_database(self) -> None:
        ping(self.engine)


def build_runtime(
    *,
    name: str,
    settings: SettingsT,
    metadata: MetaData,
    platform: PlatformTables,
    clock: Clock | None = None,
    bus: Bus | None = None,
    engine: Engine | None = None,
) -> ServiceRuntime[SettingsT]:
    """The common part of every service's bootstrap."""
    clock = clock or SystemClock()
    engine = engine or make_engine(settings.database_url(name),
                                   pool_timeout=settings.db_pool_timeout_seconds)
    tracing.configure(settings.otlp_endpoint, name)
    tracing.instrument_engine(engine)
    return ServiceRuntime(
        name=name,
        settings=settings,
        clock=clock,
        engine=engine,
        metadata=metadata,
        platform=platform,
        uow_factory=UnitOfWorkFactory(engine, platform, clock, name,
                                      request_lock_timeout_ms=settings.db_lock_timeout_ms),
        bus=bus or make_bus(settings),
    )


class Worker:
    """A service's background work: outbox relay, consumers and scheduled jobs, in threads."""

    def __init__(self, runtime: ServiceRuntime, *, relay: bool = True, consumers: bool = True,
                 jobs: bool = True, queues: Collection[str] | None = None) -> None:
        """`queues`: consume only these of the service's queues (all when None)."""
        unknown = set(queues or ()) - {s.queue.name for s in runtime.subscriptions}
        if unknown:
            raise ValueError(f"{runtime.name} consumes no queue {sorted(unknown)}")
        self.runtime = runtime
        self.queues = None if queues is None else set(queues)
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.relays: list[OutboxRelay] = []  # the outbox relays it started (none without relay)
        self.scheduler: BackgroundScheduler | None = None
        self._relay, self._consumers, self._jobs = relay, consumers, jobs

    def start(self) -> None:
        rt = self.runtime
        self._declare_with_retry()
        if self._relay:
            urgent = [t.value for t in urgent_types(rt.name)]
            lane = bool(urgent) and self.urgent_lane()
            relay = OutboxRelay(
                rt.uow_factory, rt.bus.publisher,
                batch_size=rt.settings.outbox_batch_size,
                poll_seconds=rt.settings.outbox_poll_seconds,
                on_published=rt.events_published.inc,
                first=() if lane else urgent, skip=urgent if lane else (),
                # a relay that sends no urgent event batches the commits of a moment
                linger_seconds=rt.settings.outbox_linger_seconds if lane or not urgent else 0.0,
            )
            self.relays.append(relay)
            self._spawn(f"{rt.name}-relay", relay.run, self.stop_event)
            if lane:
                # the urgent events by a relay of their own: not claimed after a bulk batch's
                # confirms, nor queued behind its messages in the broker's channel
                urgent_relay = OutboxRelay(
                    rt.uow_factory, rt.bus.publisher, batch_size=URGENT_LANE_BATCH,
                    poll_seconds=rt.settings.outbox_poll_seconds,
                    on_published=rt.events_published.inc, only=urgent,
                    signal=rt.uow_factory.outbox_signal.follower(),
                )
                self.relays.append(urgent_relay)
                self._spawn(f"{rt.name}-relay-urgent", urgent_relay.run, self.stop_event)
            if rt.engine.dialect.name == "postgresql":
                # an API in another process (`hai serve --no-worker`) commits most events: its
                # commit's NOTIFY wakes this relay, which otherwise sees them at its next poll;
                # this process's own commits wake only this relay (in-process), no other
                relay_in_this_process(rt.engine)
                listener = OutboxListener(rt.engine, rt.name, rt.uow_factory.outbox_signal)
                self._spawn(f"{rt.name}-outbox-listener", listener.run, self.stop_event)
        if self._consumers:
            for sub in rt.subscriptions:
                if self.queues is not None and sub.queue.name not in self.queues:
                    continue
                consumer = EventConsumer(
                    sub.queue.name, sub.queue, sub.handlers, rt.uow_factory,
                    max_attempts=rt.settings.consumer_max_attempts,
                    on_outcome=self._count_outcome, batch_handlers=sub.batch_handlers,
                    prepare=sub.prepare,
                )
                for n in range(max(1, sub.consumers)):
                    suffix = f"-{n + 1}" if sub.consumers > 1 else ""
                    self._spawn(f"{rt.name}-consume-{sub.queue.name}{suffix}", self._consume,
                                consumer, sub.batch or rt.settings.consumer_prefetch)
        jobs = self.jobs()
        if jobs:
            self.scheduler = BackgroundScheduler(timezone="UTC")
            for job in jobs:
                self.scheduler.add_job(
                    self.run_job, "interval", args=[job], seconds=job.interval_seconds,
                    id=job.name, max_instances=1, coalesce=True, next_run_time=None,
                )
            self.scheduler.start()
            for job in jobs:
                rt.jobs_started_at[job.name] = rt.clock.now()
            # first run soon after start rather than a whole interval later
            for job in jobs:
                self.scheduler.modify_job(job.name, next_run_time=_soon(rt))
        if self._consumers:
            self._spawn(f"{rt.name}-queue-depths", watch_queues, rt, self.stop_event)
        if rt.settings.worker_heartbeat_file:
            self._spawn(f"{rt.name}-heartbeat", self._heartbeat, rt.settings.worker_heartbeat_file)
        log.info("worker.started", service=rt.name, threads=len(self.threads),
                 jobs=[j.name for j in jobs])

    def urgent_lane(self) -> bool:
        """Whether the contract's urgent events go by a relay of their own (HAI_OUTBOX_URGENT_LANE,
        on PostgreSQL and a broker: with SQLite's one writer and the in-process bus, a second
        relay gains nothing)."""
        rt = self.runtime
        return (rt.settings.outbox_urgent_lane and rt.engine.dialect.name == "postgresql"
                and not isinstance(rt.bus, InProcessBus))

    def jobs(self) -> list[Job]:
        """The service's jobs this worker runs: none without jobs; with `queues`, those meant
        for workers of one of them (or for every worker)."""
        if not self._jobs:
            return []
        return [j for j in self.runtime.jobs
                if j.queues is None or self.queues is None or j.queues & self.queues]

    def _heartbeat(self, path: str) -> None:
        """Touch `path` while every worker thread is alive: the liveness probe of a worker pod."""
        me = threading.current_thread()
        while True:
            if all(t.is_alive() for t in self.threads if t is not me):
                with open(path, "a"):
                    os.utime(path, None)
            if self.stop_event.wait(10.0):
                return

    def _declare_with_retry(self) -> None:
        delay = 0.5
        while not self.stop_event.is_set():
            try:
                self.runtime.bus.declare(self.runtime.all_queues())
                return
            except Exception as exc:  # noqa: BLE001 - broker not up yet: keep trying
                log.warning("worker.declare_failed", error=str(exc), retry_in_s=delay)
                self.stop_event.wait(delay)
                delay = min(delay * 2, 10)

    def _consume(self, consumer: EventConsumer, batch: int) -> None:
        rt = self.runtime
        while not self.stop_event.is_set():
            try:
                rt.bus.consume(consumer.queue, consumer.process,
                               prefetch=batch, stop=self.stop_event,
                               retry_delay_ms=rt.settings.consumer_retry_delay_ms)
            except Exception as exc:  # noqa: BLE001 - the consumer never dies
                log.error("consumer.crashed", queue=consumer.queue.name, error=safe_error(exc))
                self.stop_event.wait(1.0)

    def _count_outcome(self, consumer: str, outcome: Outcome) -> None:
        self.runtime.events_handled.labels(consumer=consumer, outcome=outcome.action).inc()

    def run_job(self, job: Job) -> dict[str, Any]:
        """Run one job now; a failure is logged and retried at the next interval."""
        rt = self.runtime
        started = time.monotonic()
        try:
            facts = job.run(rt)
        except Exception as exc:  # noqa: BLE001 - a failing job tries again next sweep
            rt.job_runs.labels(job=job.name, result="error").inc()
            log.exception("job.failed", job=job.name, error=safe_error(exc))
            return {"ok": False, "error": safe_error(exc)}
        rt.job_runs.labels(job=job.name, result="ok").inc()
        rt.job_last_ok[job.name] = time.time()
        rt.job_last_ok_at[job.name] = rt.clock.now()
        elapsed = time.monotonic() - started
        shown = {k: v for k, v in (facts or {}).items() if isinstance(v, int | float | str)}
        # a frequent job that found nothing to do logs at debug, so its log stays readable
        busy = elapsed > 1.0 or any(v for v in shown.values() if not isinstance(v, str))
        (log.info if busy else log.debug)("job.done", job=job.name, seconds=round(elapsed, 3),
                                           **shown)
        return facts or {}

    def _spawn(self, name: str, target: Callable[..., Any], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        for thread in self.threads:
            thread.join(timeout)


def _soon(rt: ServiceRuntime) -> datetime:
    """A second from now (APScheduler's own clock, not the service's injectable one)."""
    return datetime.now(UTC) + timedelta(seconds=1)


def lower_cpu_priority(nice: int) -> int | None:
    """Lower this process's CPU priority by `nice` (0: unchanged). A worker of bulk work (a
    sweep's burst of events) then yields the CPU to the processes that page (the flow worker,
    the APIs) when the machine has too little; it gets the whole CPU when nothing else runs.

    On Linux with autogroups (sched(7); on by default on Debian), the scheduler shares the CPU
    between sessions first, and a process's nice weighs it only against the other processes of
    its own session. honcho starts every process of deploy/Procfile in a session of its own,
    and PostgreSQL's every backend leads one too: there, nice(2) alone changed nothing. A worker
    that leads its session lowers its session's autogroup as well (`AUTOGROUP`); one that does
    not (run from a shell, beside others of its session) lowers only itself, never its
    session's other processes. Returns the autogroup's new nice (None: left as it was)."""
    if not nice:
        return None
    os.nice(nice)
    if os.getsid(0) == os.getpid():
        return lower_autogroup(nice)
    return None


# "/autogroup-42 nice 0"; absent without autogroups; empty in the root autogroup (PID 1's session)
AUTOGROUP = Path("/proc/self/autogroup")


def lower_autogroup(nice: int, autogroup: Path = AUTOGROUP) -> int | None:
    """Lower the nice of this process's autogroup by `nice` (raising a nice needs no privilege);
    its new nice, or None where the kernel has no autogroups or this is the root autogroup (PID
    1's session, as in a container: the file reads empty and has no nice of its own)."""
    try:
        lowered = min(19, int(autogroup.read_text().split()[-1]) + nice)
        autogroup.write_text(f"{lowered}\n")
    except (OSError, ValueError, IndexError):
        return None
    return lowered


def settle_heap() -> None:
    """Move what start-up built (modules, the app, schemas, mappers) out of the collector's
    sight: a full collection then walks only what requests allocate, not the whole start-up
    heap in the middle of some request."""
    gc.collect()
    gc.freeze()
