"""Alembic per service: each service its own history (services/<name>/migrations) and database."""

from __future__ import annotations

import zlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, MetaData, text

from shared.db import RELAY_HERE, make_engine, outbox_channel

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(service: str, url: str) -> Config:
    """The Alembic configuration of one service, pointed at one database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "services" / service / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["service"] = service
    return cfg


def upgrade(service: str, url: str, revision: str = "head") -> None:
    """Upgrade one service's schema; replicas starting together take turns (advisory lock)."""
    engine = make_engine(url)
    try:
        if engine.dialect.name != "postgresql":
            command.upgrade(alembic_config(service, url), revision)
            return
        with engine.connect() as lock_conn:
            key = zlib.crc32(f"hai-migrate-{service}".encode())
            lock_conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                command.upgrade(alembic_config(service, url), revision)
            finally:
                lock_conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                lock_conn.commit()
    finally:
        engine.dispose()


def create_outbox_notify(conn: Connection, service: str) -> None:
    """PostgreSQL: every statement that inserts outbox rows notifies `outbox_channel(service)`,
    delivered when (and only if) its transaction commits, once per transaction: the relays of
    the service's other processes (`hai worker`) wake at once rather than at their next poll.
    A trigger, not a NOTIFY sent by the unit of work: no round trip, and every writer of the
    outbox (COPY too) is covered. A process that relays its own commits (a worker: its
    connections carry `RELAY_HERE`, `shared.db.relay_in_this_process`) notifies nobody: its
    relay is woken in-process, and waking every other relay of the service on each of its
    commits cost them a claim each (0.3 of a core in alerts' flow worker at 20 readings/s).
    Elsewhere (SQLite: one process) nothing."""
    if conn.dialect.name != "postgresql":
        return
    conn.execute(text(
        "CREATE OR REPLACE FUNCTION hai_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN IF current_setting('{RELAY_HERE}', true) IS DISTINCT FROM 'on' THEN "
        "PERFORM pg_notify(TG_ARGV[0], ''); END IF; RETURN NULL; END $$"))
    conn.execute(text(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT "
        f"EXECUTE FUNCTION hai_outbox_notify('{outbox_channel(service)}')"))


def drop_outbox_notify(conn: Connection) -> None:
    """Undo `create_outbox_notify`."""
    if conn.dialect.name != "postgresql":
        return
    conn.execute(text("DROP TRIGGER IF EXISTS outbox_notify ON outbox"))
    conn.execute(text("DROP FUNCTION IF EXISTS hai_outbox_notify()"))


def make_revision(service: str, url: str, message: str) -> None:
    """Autogenerate a new revision from the service's models (developers' tool)."""
    command.revision(alembic_config(service, url), message=message, autogenerate=True)


def run_env(metadata: MetaData) -> None:
    """The body of every service's migrations/env.py."""
    from alembic import context

    config = context.config
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
