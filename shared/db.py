"""Database plumbing shared by the services: engines, UTC timestamps, platform tables, unit of work."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, SessionTransaction, sessionmaker
from sqlalchemy.types import TypeDecorator

from shared import tracing
from shared.clock import Clock, ensure_utc
from shared.contracts import registry
from shared.events import EVENTS_EXCHANGE, CloudEvent
from shared.scoping import EVERY_CENTER, CenterScope, scope_session

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored with its zone on PostgreSQL and always handed back timezone-aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: every timestamp must be timezone-aware")
        return ensure_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else ensure_utc(value)


BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def new_id() -> str:
    """A new random identifier (UUID4, text)."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class PlatformTables:
    """The tables every service keeps beside its own: outbox, inbox, idempotency keys, audit."""

    outbox: Table
    inbox: Table
    idempotency: Table
    audit: Table


def define_platform_tables(metadata: MetaData) -> PlatformTables:
    """Add the platform tables to one service's metadata."""
    outbox = Table(
        "outbox",
        metadata,
        Column("seq", BigIntPK, primary_key=True, autoincrement=True),
        Column("event_id", String(64), nullable=False, unique=True),
        Column("exchange", String(100), nullable=False),
        Column("routing_key", String(200), nullable=False),
        Column("body", Text, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("published_at", UTCDateTime, nullable=True),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("last_error", Text, nullable=True),
    )
    Index(
        "ix_outbox_unpublished",
        outbox.c.seq,
        postgresql_where=outbox.c.published_at.is_(None),
        sqlite_where=outbox.c.published_at.is_(None),
    )
    inbox = Table(
        "inbox",
        metadata,
        Column("consumer", String(100), primary_key=True),
        Column("event_id", String(64), primary_key=True),
        Column("event_type", String(200), nullable=False),
        Column("processed_at", UTCDateTime, nullable=False),
    )
    idempotency = Table(
        "idempotency_keys",
        metadata,
        Column("scope", String(300), primary_key=True),
        Column("key", String(200), primary_key=True),
        Column("request_hash", String(64), nullable=False),
        Column("status_code", Integer, nullable=False),
        Column("response_body", Text, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
    )
    audit = Table(
        "audit_log",
        metadata,
        Column("id", BigIntPK, primary_key=True, autoincrement=True),
        Column("at", UTCDateTime, nullable=False),
        Column("actor", String(200), nullable=False),
        Column("action", String(100), nullable=False),
        Column("entity_type", String(100), nullable=False),
        Column("entity_id", String(200), nullable=False),
        Column("changes", JSON, nullable=False),
    )
    Index("ix_audit_entity", audit.c.entity_type, audit.c.entity_id, audit.c.id)
    return PlatformTables(outbox=outbox, inbox=inbox, idempotency=idempotency, audit=audit)


def outbox_channel(service: str) -> str:
    """The PostgreSQL channel notified when a transaction that wrote `service`'s outbox commits
    (the outbox's trigger, `shared.migrations.create_outbox_notify`); its relays LISTEN on it."""
    return f"hai_outbox_{service}"


# a connection setting: "on" in processes that relay their own outbox (the outbox's trigger
# then notifies no one: `shared.migrations.create_outbox_notify`)
RELAY_HERE = "hai.relay_here"


def relay_in_this_process(engine: Engine) -> None:
    """Mark the engine's connections as those of a process whose own relay publishes what it
    commits (woken by `UnitOfWorkFactory.outbox_signal`): their commits wake no other process's
    relay. Connections made before are dropped, so that every one carries the mark."""
    if engine.dialect.name != "postgresql":
        return

    @event.listens_for(engine, "connect")
    def _relay_here(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute(f"SET {RELAY_HERE} = on")
        dbapi_conn.commit()  # a SET in a transaction rolled back would be undone

    engine.dispose()


class Wakeup(threading.Event):
    """An event that also sets its followers: a commit that published wakes every relay of the
    process (each waits on an event of its own, which it clears before it looks for rows, so
    that one relay's clear never swallows another's wake-up)."""

    def __init__(self) -> None:
        super().__init__()
        self._followers: list[threading.Event] = []

    def follower(self) -> threading.Event:
        """A new event, set whenever this one is."""
        follower = threading.Event()
        self._followers.append(follower)
        return follower

    def set(self) -> None:
        super().set()
        for follower in self._followers:
            follower.set()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for a service's database; SQLite files get their folder, WAL and a busy timeout."""
    # a failed statement's error names the statement, never its values (they may be an MRN)
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs.pop("pool_timeout", None)  # one connection per thread: no checkout to time
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    # no pre-ping (a round trip on every checkout): a connection found dead raises, the pool is
    # invalidated at once, the request answers 503 and the next one reconnects
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_recycle", 1800)
    return create_engine(url, **kwargs)


def is_postgres(engine_or_session: Engine | Session) -> bool:
    """True when the database behind it is PostgreSQL."""
    bind = engine_or_session.get_bind() if isinstance(engine_or_session, Session) else engine_or_session
    return bind.dialect.name == "postgresql"


def rowcount(result: object) -> int:
    """Rows matched by an UPDATE (a CursorResult's rowcount)."""
    return int(getattr(result, "rowcount", 0))


def ping(engine: Engine) -> None:
    """Raise when the database does not answer."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def insert_if_absent(session: Session, table: Table | type[DeclarativeBase],
                     values: Mapping[str, Any]) -> None:
    """Insert the row unless its primary key is taken (`ON CONFLICT DO NOTHING`): of requests
    creating the same key at once, none fails; on PostgreSQL the later ones wait for the first."""
    from sqlalchemy.dialects import postgresql, sqlite

    stmt = (postgresql.insert(table) if is_postgres(session) else sqlite.insert(table))
    session.execute(stmt.values(**values).on_conflict_do_nothing())


def bulk_insert(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert many rows (each with the same columns) in this session's transaction.

    On PostgreSQL they are streamed with COPY: one statement, rows formatted in C, data flowing
    one way, where an executemany (psycopg runs it in pipeline mode) is an INSERT per row, each
    bound, executed and answered on its own. The columns' bind processing still applies (UTC
    timestamps, JSON). Elsewhere, or when a missing column has a Python-side default that COPY
    would not apply: executemany."""
    if not rows:
        return
    columns = list(rows[0])
    python_defaults = any(c.default is not None for c in table.c if c.name not in rows[0])
    if len(rows) == 1 or python_defaults or not is_postgres(session):
        session.execute(insert(table), list(rows))
        return
    dialect = session.get_bind().dialect
    processors = [table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
                  for name in columns]
    quote = dialect.identifier_preparer
    statement = (f"COPY {quote.format_table(table)} "
                 f"({', '.join(quote.quote(name) for name in columns)}) FROM STDIN")
    driver = session.connection().connection.driver_connection
    with driver.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
        for row in rows:
            if len(row) != len(columns):
                raise ValueError("bulk_insert: every row must have the same columns")
            copy.write_row([value if process is None else process(value)
                            for value, process in zip((row[name] for name in columns),
                                                      processors, strict=True)])


def _set_lock_timeout(session: Session, _transaction: Any, connection: Any) -> None:
    """PostgreSQL: a transaction that must answer a caller waits this long for a lock, then fails."""
    timeout_ms = session.info.get("lock_timeout_ms")
    if timeout_ms:
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = {int(timeout_ms)}")


class UnitOfWork:
    """One database transaction, with the outbox rows and audit entries written inside it.

    The commit rule: whoever opens a unit of work commits it; whoever is handed one never does.

    - Domain and service functions (`services/<name>/service.py`, the scheduling sub-domain
      modules, the alert rules and paging policy, consumers' handlers) take a `UnitOfWork` and
      only stage changes in it: `session.add`/`flush`/`execute`, `publish` to the outbox,
      `audit`. They never call `commit()`; a failure is an exception, and what was staged is
      rolled back by the edge.
    - The edges open it and commit it, once, after the work succeeded:
      - HTTP: the request's unit of work (`shared.web.UowDep`) is committed when the route
        returns (in the route's own thread, by the services' `UnitOfWorkRoute`; else by the
        `get_uow` dependency) and rolled back when it raises, before the answer is sent (a
        failed commit answers 409 or 503, never the 2xx). Routes never commit. A creating POST
        goes through `Idempotency.run`, which commits the change together with the stored
        answer of its key (so that a concurrent request with the same key gets that answer);
        the dependency's commit then has nothing left to do. A route that must keep what it
        wrote and still answer an error returns the problem response rather than raise.
      - Consumers (`shared.messaging.consumer.EventConsumer`): one transaction per batch (or
        per message once one failed), the inbox claim with the handlers' changes, committed
        before the acknowledgement. The HL7 bridge (`services/hl7_bridge/bridge.py`) is a
        consumer and a listener of its own: it commits what it sent before acknowledging, and
        what it received before answering AA.
      - Jobs (`services/<name>/jobs.py`, the outbox relay, start-up seeding): each step opens
        its own unit of work from the factory and commits it (`UnitOfWorkFactory.begin`, or
        `commit()` at the end of the block). The alerts pager (`services/alerts/paging.py`:
        `escalate_due`, `claim_due`, `record_result`) is a job: it commits its claim before it
        sends a page outside any transaction and records the result in a second transaction
        (the urgent lane's claim is staged in the flow consumer's own transaction, as it
        commits, and its page sent once that has committed: `PagerKick.page_at_commit`).
    - So the change, its audit rows and its outbox rows commit together or not at all.
      `tests/unit/platform/test_commit_rule.py` fails when code under `services/` commits a
      unit of work the same function did not open (`with factory() as uow:`), or when a route
      or a service module commits at all.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        platform: PlatformTables,
        clock: Clock,
        source: str,
        after_commit: Callable[[], None] | None = None,
        lock_timeout_ms: int | None = None,
    ) -> None:
        self._session_factory = session_factory
        self.platform = platform
        self.clock = clock
        self.source = source
        self._after_commit = after_commit
        self._lock_timeout_ms = lock_timeout_ms
        self._session: Session | None = None
        self._published = 0
        # audit and outbox rows kept for the commit (`defer_platform_writes`), else None
        self._deferred: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None
        self.centers: CenterScope = EVERY_CENTER

    @property
    def session(self) -> Session:
        if self._session is None:
            raise RuntimeError("unit of work used outside its 'with' block")
        return self._session

    def __enter__(self) -> UnitOfWork:
        self._session = self._session_factory()
        if self._lock_timeout_ms:
            self._session.info["lock_timeout_ms"] = self._lock_timeout_ms
        self._published = 0
        self._deferred = None
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.session.rollback()
        finally:
            self.session.close()
            self._session = None
            self._deferred = None

    def scope_to(self, centers: CenterScope) -> None:
        """Limit what this unit of work reads to those centres (`shared.scoping`): the request's
        unit of work is scoped to its token's centres; background work is not."""
        self.centers = centers
        scope_session(self.session, centers)

    def commit(self) -> None:
        """Commit the transaction, then wake the outbox relay if anything was published."""
        self.session.commit()
        if self._published and self._after_commit is not None:
            self._after_commit()
        self._published = 0

    def rollback(self) -> None:
        self.session.rollback()
        self._published = 0

    def defer_platform_writes(self) -> None:
        """From now on, keep this unit of work's audit and outbox rows and write them when its
        transaction commits, in order, one statement per table (a consumer's batch raising 20
        alerts writes 2, not 40); a rollback drops them with the rest. Only for work that does
        not read those tables before it commits, nor write them in a savepoint."""
        if self._deferred is None:
            self._deferred = ([], [])
            event.listen(self.session, "before_commit", self._write_deferred)
            event.listen(self.session, "after_transaction_end", self._drop_deferred)

    def _defer(self, rows: list[dict[str, Any]], new: Sequence[dict[str, Any]]) -> None:
        if not self.session.in_transaction():
            # the rows belong to a transaction: begun now, so that a rollback before any
            # statement ends it too (and drops them)
            self.session.begin()
        rows.extend(new)

    def _write_deferred(self, session: Session) -> None:
        # before_commit: on whichever path commits the session, so none commits without them;
        # SQLAlchemy runs it for a savepoint's commit too, whose rows a rollback could still
        # take: they wait for the transaction's own commit
        if self._deferred is None or session.in_nested_transaction():
            return
        audit_rows, outbox_rows = self._deferred
        if audit_rows:
            bulk_insert(session, self.platform.audit, audit_rows)
        if outbox_rows:
            bulk_insert(session, self.platform.outbox, outbox_rows)
        audit_rows.clear()
        outbox_rows.clear()

    def _drop_deferred(self, _session: Session, transaction: SessionTransaction) -> None:
        # the transaction ended: committed (they were written) or rolled back (they go with it)
        if self._deferred is not None and transaction.parent is None:
            for rows in self._deferred:
                rows.clear()

    def now(self) -> datetime:
        return self.clock.now()

    def publish(self, data: BaseModel, *, subject: str | None = None) -> CloudEvent:
        """Write the event `data` is the payload of to the outbox in this transaction; it leaves
        only if the transaction commits. Its type and exchange are the contract's registry's."""
        spec = registry.spec_for(data)
        return self.publish_raw(spec.event_type.value, data, subject=subject, exchange=spec.exchange)

    def publish_many(self, events: Sequence[tuple[BaseModel, str | None]]) -> int:
        """Write many (payload, subject) events to the outbox in one statement."""
        specs = [registry.spec_for(data) for data, _ in events]
        return self._publish_rows([(spec.event_type.value, spec.exchange, data, subject)
                                   for spec, (data, subject) in zip(specs, events, strict=True)])

    def publish_raw(self, event_type: str, data: Any, *, subject: str | None = None,
                    exchange: str = EVENTS_EXCHANGE) -> CloudEvent:
        """Write an event of any type (the platform's own tests and tools); the services publish
        the contract's events through `publish`."""
        event = CloudEvent.create(
            source=f"/hai/{self.source}", type=event_type, data=data, subject=subject,
            time=self.clock.now(), traceparent=tracing.current_traceparent(),
        )
        self.publish_event(event, exchange=exchange)
        return event

    def publish_many_raw(self, events: Sequence[tuple[str, Any, str | None]], *,
                         exchange: str = EVENTS_EXCHANGE) -> int:
        """Write many (type, data, subject) events of any type to the outbox in one statement."""
        return self._publish_rows([(t, exchange, data, subject) for t, data, subject in events])

    def _publish_rows(self, events: Sequence[tuple[str, str, Any, str | None]]) -> int:
        if not events:
            return 0
        now = self.clock.now()
        traceparent = tracing.current_traceparent()
        rows = []
        for event_type, exchange, data, subject in events:
            event = CloudEvent.create(source=f"/hai/{self.source}", type=event_type, data=data,
                                      subject=subject, time=now, traceparent=traceparent)
            rows.append({"event_id": event.id, "exchange": exchange, "routing_key": event.type,
                         "body": event.model_dump_json(exclude_none=True), "created_at": now})
        if self._deferred is not None:
            self._defer(self._deferred[1], rows)
        else:
            bulk_insert(self.session, self.platform.outbox, rows)
        self._published += len(rows)
        return len(rows)

    def publish_event(self, event: CloudEvent, *, exchange: str = EVENTS_EXCHANGE) -> None:
        """Write an already built event to the outbox."""
        # the values go as parameters of one fixed statement: `.values(...)` would build (and
        # key for the statement cache) a new statement on every call, several times the cost
        row = {"event_id": event.id, "exchange": exchange, "routing_key": event.type,
               "body": event.model_dump_json(exclude_none=True), "created_at": self.clock.now()}
        if self._deferred is not None:
            self._defer(self._deferred[1], [row])
        else:
            self.session.execute(insert(self.platform.outbox), row)
        self._published += 1

    def audit(
        self,
        *,
        actor: str,
        action: str,
        entity_type: str,
        entity_id: str,
        changes: dict[str, Any] | None = None,
    ) -> None:
        """Record who did what to which entity, and when, in this transaction."""
        row = {"at": self.clock.now(), "actor": actor, "action": action,
               "entity_type": entity_type, "entity_id": entity_id,
               "changes": json.loads(json.dumps(changes or {}, default=str))}
        if self._deferred is not None:
            self._defer(self._deferred[0], [row])
        else:
            self.session.execute(insert(self.platform.audit), row)


class UnitOfWorkFactory:
    """Makes units of work for one service; wired once in its bootstrap."""

    def __init__(
        self,
        engine: Engine,
        platform: PlatformTables,
        clock: Clock,
        source: str,
        request_lock_timeout_ms: int | None = None,
    ) -> None:
        self.engine = engine
        self.platform = platform
        self.clock = clock
        self.source = source
        self.request_lock_timeout_ms = request_lock_timeout_ms
        self.session_factory = sessionmaker(bind=engine, expire_on_commit=False)
        if request_lock_timeout_ms and engine.dialect.name == "postgresql":
            event.listen(self.session_factory, "after_begin", _set_lock_timeout)
        self.outbox_signal = Wakeup()

    def __call__(self) -> UnitOfWork:
        return UnitOfWork(
            self.session_factory, self.platform, self.clock, self.source,
            after_commit=self.outbox_signal.set,
        )

    def for_request(self) -> UnitOfWork:
        """A unit of work for an HTTP request: on PostgreSQL it waits for a row lock at most
        `request_lock_timeout_ms`, then fails (409), rather than hold the caller and a pooled
        connection (background work keeps waiting: nobody is on the line)."""
        return UnitOfWork(
            self.session_factory, self.platform, self.clock, self.source,
            after_commit=self.outbox_signal.set, lock_timeout_ms=self.request_lock_timeout_ms,
        )

    @contextmanager
    def begin(self) -> Iterator[UnitOfWork]:
        """A unit of work that commits when the block ends without error."""
        with self() as uow:
            yield uow
            uow.commit()
