"""Each service's Alembic history has one head and builds exactly the schema its models declare."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from shared.clock import SystemClock
from shared.db import UnitOfWorkFactory, make_engine, outbox_channel
from shared.messaging.relay import OutboxListener
from shared.migrations import alembic_config, upgrade

SERVICES = ("inventory", "scheduling", "alerts", "hl7_bridge")


def _diff(service: str, url: str) -> list[Any]:
    """What autogenerate would still write after `upgrade head`: nothing, when they agree."""
    upgrade(service, url)
    metadata = importlib.import_module(f"services.{service}.models").metadata
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


@pytest.mark.parametrize("service", SERVICES)
def test_one_head_per_service(service: str) -> None:
    script = ScriptDirectory.from_config(alembic_config(service, "sqlite://"))
    assert len(script.get_heads()) == 1, f"{service} has several heads: {script.get_heads()}"


@pytest.mark.parametrize("service", SERVICES)
def test_migrations_build_the_models_schema_on_sqlite(service: str, tmp_path: Path) -> None:
    assert _diff(service, f"sqlite:///{tmp_path}/{service}.db") == []


@pytest.mark.parametrize("service", SERVICES)
def test_migrations_build_the_models_schema_on_postgres(
        service: str, pg_database: Callable[[str], str]) -> None:
    assert _diff(service, pg_database(service)) == []


@pytest.mark.parametrize("service", SERVICES)
def test_a_commit_that_wrote_the_outbox_notifies_the_services_relays_on_postgres(
        service: str, pg_database: Callable[[str], str]) -> None:
    url = pg_database(service)
    upgrade(service, url)
    platform = importlib.import_module(f"services.{service}.models").platform
    engine = make_engine(url)
    factory = UnitOfWorkFactory(engine, platform, SystemClock(), service)
    try:
        with OutboxListener(engine, service, factory.outbox_signal).connect() as listening:
            listening.execute(f'LISTEN "{outbox_channel(service)}"')
            with factory() as uow:  # rolled back: nothing to wake anyone for
                uow.publish_raw("test.rolled.back", {})
            with factory.begin() as uow:  # two statements, one transaction: one notification
                uow.publish_raw("test.one", {})
                uow.publish_many_raw([("test.two", {}, None), ("test.three", {}, None)])
            got = list(listening.notifies(timeout=2.0))
        assert [n.channel for n in got] == [outbox_channel(service)]
    finally:
        engine.dispose()
