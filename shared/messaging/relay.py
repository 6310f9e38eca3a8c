"""The outbox relay: publishes committed events in batches with confirms, then marks them sent."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import BigInteger, Engine, any_, bindparam, case, select, update
from sqlalchemy.dialects import postgresql

from shared.db import UnitOfWork, UnitOfWorkFactory, is_postgres, outbox_channel
from shared.logging import safe_error
from shared.messaging.base import OutgoingMessage, Publisher

log = structlog.get_logger(__name__)


@dataclass
class _InFlight:
    """A batch sent to the broker and not yet confirmed: its rows stay locked until marked."""

    uow: UnitOfWork
    seqs: list[int]
    wait: Callable[[], None]


class OutboxRelay:
    """Moves outbox rows to the broker; several relays may run at once (rows are claimed)."""

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        publisher_factory: Callable[[], Publisher],
        *,
        batch_size: int = 500,
        poll_seconds: float = 0.5,
        on_published: Callable[[int], None] | None = None,
        first: Collection[str] = (),
        only: Collection[str] | None = None,
        skip: Collection[str] = (),
        signal: threading.Event | None = None,
        linger_seconds: float = 0.0,
    ) -> None:
        """`first`: routing keys sent ahead of older rows (the contract's urgent events): each
        batch takes those first, in their order, then the oldest of the rest. `only`: the relay
        sends rows of these routing keys and no others; `skip`: it never sends rows of these
        (an urgent lane and the relay of the rest: `urgent_lane`). `signal`: what wakes it
        (default: the factory's `outbox_signal`; a second relay of the process waits on a
        follower of it). `linger_seconds`: woken by a commit, the relay waits this long before it
        claims, so that the commits of the next moment go in the same batch (one claim, one
        publish and its confirms, one mark and one commit for them all, not each its own); never
        for a relay of urgent events, nor for a backlog (a full batch claims the next at once)."""
        self.uow_factory = uow_factory
        self.first = sorted(first)
        self.only = None if only is None else sorted(only)
        self.skip = sorted(skip)
        self.signal = signal if signal is not None else uow_factory.outbox_signal
        self.publisher_factory = publisher_factory
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.linger_seconds = linger_seconds
        self._publisher: Publisher | None = None
        self._on_published = on_published
        self.last_run_at: float | None = None

    def run_once(self) -> int:
        """Publish one batch of unsent events; returns how many were published."""
        with self.uow_factory() as uow:
            seqs, messages = self._claim(uow)
            if not seqs:
                return 0
            self._publish(messages)
            self.mark_published(uow, seqs)
            uow.commit()
        if self._on_published is not None:
            self._on_published(len(seqs))
        return len(seqs)

    def _claim(self, uow: UnitOfWork) -> tuple[list[int], list[OutgoingMessage]]:
        """The next batch of unsent rows, oldest first (those of `first` before the rest),
        locked (PostgreSQL) for this transaction."""
        outbox = self.uow_factory.platform.outbox
        stmt = (
            select(outbox.c.seq, outbox.c.event_id, outbox.c.exchange, outbox.c.routing_key,
                   outbox.c.body)
            .where(outbox.c.published_at.is_(None))
            .limit(self.batch_size)
        )
        if self.only is not None:
            stmt = stmt.where(outbox.c.routing_key.in_(self.only))
        if self.skip:
            stmt = stmt.where(outbox.c.routing_key.not_in(self.skip))
        if self.first:
            # a sweep's thousands committed just before an abnormal flow do not go ahead of it
            stmt = stmt.order_by(case((outbox.c.routing_key.in_(self.first), 0), else_=1))
        stmt = stmt.order_by(outbox.c.seq)
        if is_postgres(uow.session):
            # rows another relay (or our own batch in flight) holds are skipped, not waited for
            stmt = stmt.with_for_update(skip_locked=True)
        rows = uow.session.execute(stmt).all()
        self.last_run_at = time.monotonic()
        return [seq for seq, *_ in rows], [
            OutgoingMessage(message_id=event_id, exchange=exchange, routing_key=routing_key,
                            body=body.encode())
            for _, event_id, exchange, routing_key, body in rows
        ]

    def _send_next(self) -> _InFlight | None:
        """Claim the next batch in a transaction of its own and send it without waiting."""
        uow = self.uow_factory().__enter__()
        try:
            seqs, messages = self._claim(uow)
            if not seqs:
                uow.__exit__(None, None, None)
                return None
            if self._publisher is None:
                self._publisher = self.publisher_factory()
            return _InFlight(uow, seqs, self._publisher.publish_batch_async(messages))
        except BaseException:
            uow.__exit__(None, None, None)
            raise

    def _settle(self, batch: _InFlight) -> None:
        """Wait for a sent batch's confirms, then mark its rows and commit."""
        try:
            batch.wait()
            self.mark_published(batch.uow, batch.seqs)
            batch.uow.commit()
        finally:
            batch.uow.__exit__(None, None, None)
        if self._on_published is not None:
            self._on_published(len(batch.seqs))

    def _publish(self, messages: Sequence[OutgoingMessage]) -> None:
        if self._publisher is None:
            self._publisher = self.publisher_factory()
        try:
            self._publisher.publish_batch(messages)
        except Exception:
            self._drop_publisher()
            raise

    def mark_published(self, uow: Any, seqs: list[int]) -> None:
        """Mark the rows sent, in one statement."""
        outbox = self.uow_factory.platform.outbox
        if is_postgres(uow.session):
            # one array parameter: the same statement text whatever the batch's size
            rows = outbox.c.seq == any_(bindparam("seqs", seqs, type_=postgresql.ARRAY(BigInteger)))
        else:
            rows = outbox.c.seq.in_(seqs)
        uow.session.execute(update(outbox).where(rows).values(published_at=uow.now()))

    def _drop_publisher(self) -> None:
        if self._publisher is not None:
            try:
                self._publisher.close()
            except Exception:  # noqa: BLE001 - the connection is already broken
                pass
            self._publisher = None

    def run(self, stop: threading.Event) -> None:
        """Relay until stopped: at once when woken (a commit of this process that published,
        or another process's, through `OutboxListener`), else every poll interval.

        On PostgreSQL, while there is a backlog (full batches), the relay keeps the broker busy:
        it claims and sends the next batch before it waits for the confirms of the one before,
        so the broker's work on one batch overlaps the database's on the other. A batch that is
        not full is settled at once, as a lone event should be. The batches still leave in
        order (with `first`, an urgent event committed during a backlog goes in the next batch
        claimed, ahead of older rows of other types); only if a batch fails after the next one
        was sent does that one arrive first (the failed one is sent again later, as after any
        failure: delivery is at least once)."""
        signal = self.signal
        pipelined = is_postgres(self.uow_factory.engine)
        backoff = 0.5
        in_flight: list[_InFlight] = []
        try:
            while not stop.is_set():
                try:
                    if not in_flight:
                        signal.clear()
                    if pipelined:
                        sent = self._send_next()
                        if sent is not None:
                            in_flight.append(sent)
                        # a full batch means a backlog: keep it in flight and claim the next;
                        # otherwise settle now: a lone event is marked sent as soon as the
                        # broker confirms it, not when a next batch comes
                        busy = sent is not None and len(sent.seqs) >= self.batch_size
                        while len(in_flight) > 1 or (in_flight and not busy):
                            self._settle(in_flight.pop(0))
                    else:
                        busy = self.run_once() >= self.batch_size
                    backoff = 0.5
                except Exception as exc:  # noqa: BLE001 - the relay must outlive broker and DB outages
                    self._abandon(in_flight)
                    log.warning("outbox.relay_failed", error=safe_error(exc),
                                retry_in_s=backoff)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                if not busy and signal.wait(self.poll_seconds) and self.linger_seconds:
                    stop.wait(self.linger_seconds)  # woken: the next moment's commits join it
        finally:
            self._abandon(in_flight)
            self._drop_publisher()

    def _abandon(self, in_flight: list[_InFlight]) -> None:
        """Roll back the batches in flight: their rows stay unsent and go out again later."""
        while in_flight:
            in_flight.pop().uow.__exit__(None, None, None)
        self._drop_publisher()


# The class of the listeners' advisory locks ("HAIL"); the other key is `hashtext` of the channel.
# Two 32-bit keys: a key space apart from the single 64-bit keys of the repo's other advisory
# locks (migrations, the lot rebuild), so that none can clash with these.
LISTENER_LOCK_CLASS = 0x4841494C


class OutboxListener:
    """Wakes a relay when another process commits outbox rows: PostgreSQL LISTEN on the
    service's channel (the outbox's trigger notifies it at commit), on a connection of its own.

    One listener per service listens at a time: the one whose connection holds the channel's
    session advisory lock (`LISTENER_LOCK_CLASS`, `hashtext(channel)`), so that a commit wakes
    one of the service's workers, not all of them each to claim nothing. The others stand by
    (`standing_by`): without LISTEN, they try the lock again every `wait_seconds` on the same
    connection. The lock goes with its connection: a listener that stops, dies or loses its
    connection frees it (keepalives on both sides find a peer that vanished), and a standby
    takes over at its next try, waking its relay at once (events committed meanwhile).

    Only a wake-up: every relay still polls, so a standby's relay, or one whose listener is
    down (database outage, failover, a connection on a frozen node), sees events at its poll,
    never loses them. It reconnects after any failure, and wakes the relay once it listens
    again (events committed while nobody listened)."""

    def __init__(self, engine: Engine, service: str, signal: threading.Event, *,
                 wait_seconds: float = 1.0, retry_max_seconds: float = 10.0) -> None:
        self.engine = engine
        self.channel = outbox_channel(service)
        self.signal = signal
        self.wait_seconds = wait_seconds
        self.retry_max_seconds = retry_max_seconds
        self.listening = threading.Event()  # set while LISTEN holds (for readiness and tests)
        self.standing_by = threading.Event()  # set while another listener holds the lock

    def connect(self) -> Any:
        """An autocommit psycopg connection with the engine's own connection parameters (its
        URL's hosts, `target_session_attrs`: LISTEN must reach the primary), outside its pool;
        TCP keepalives find a peer that vanished without a word."""
        import psycopg

        _args, params = self.engine.dialect.create_connect_args(self.engine.url)
        params.pop("context", None)  # SQLAlchemy's type adapters: nothing goes through them here
        for key, value in (("keepalives", 1), ("keepalives_idle", 10),
                           ("keepalives_interval", 5), ("keepalives_count", 3),
                           ("connect_timeout", 10)):
            params.setdefault(key, value)
        return psycopg.connect(autocommit=True, **params)

    def run(self, stop: threading.Event) -> None:
        """Listen (or stand by) until stopped, reconnecting with a growing delay after a
        failure."""
        backoff = 0.5
        while not stop.is_set():
            try:
                with self.connect() as conn:
                    for setting, value in (("idle", 10), ("interval", 5), ("count", 3)):
                        # the server's keepalives: they end the session (and free the lock) of
                        # a listener whose host vanished, as the client's find a server that did
                        conn.execute(f"SET tcp_keepalives_{setting} = {value}")
                    backoff = 0.5
                    if not self._take_lock(conn, stop):
                        return  # stopped while standing by
                    conn.execute(f'LISTEN "{self.channel}"')
                    self.signal.set()  # what committed while nobody listened
                    self.listening.set()
                    log.info("outbox.listening", channel=self.channel)
                    while not stop.is_set():
                        for _ in conn.notifies(timeout=self.wait_seconds):
                            self.signal.set()
            except Exception as exc:  # noqa: BLE001 - the listener outlives database outages
                log.warning("outbox.listen_failed", channel=self.channel, error=safe_error(exc),
                            retry_in_s=backoff)
            finally:
                self.listening.clear()
                self.standing_by.clear()
            stop.wait(backoff)
            backoff = min(backoff * 2, self.retry_max_seconds)

    def _take_lock(self, conn: Any, stop: threading.Event) -> bool:
        """Wait, standing by, until this connection holds the channel's lock (a session lock:
        it goes with the connection); False if stopped first."""
        while not stop.is_set():
            held = conn.execute(
                f"SELECT pg_try_advisory_lock({LISTENER_LOCK_CLASS}, hashtext(%s))",
                (self.channel,)).fetchone()[0]
            if held:
                self.standing_by.clear()
                return True
            if not self.standing_by.is_set():
                self.standing_by.set()
                log.info("outbox.standing_by", channel=self.channel)
            stop.wait(self.wait_seconds)
        return False
