"""Shared fixtures: a RabbitMQ vhost and PostgreSQL databases of this run's own."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator

import pytest

from tests import services as svc

os.environ.setdefault("HAI_LOG_JSON", "1")
_db_counter = itertools.count()


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A RabbitMQ vhost of this test run's own (deleted at the end)."""
    svc.need(svc.rabbitmq_available(), f"RabbitMQ at {svc.AMQP_HOST}:{svc.AMQP_PORT}")
    name = f"hai-test-{svc.RUN_ID}"
    url = svc.create_vhost(name)
    yield url
    svc.delete_vhost(name)


@pytest.fixture
def fresh_vhost() -> Iterator[str]:
    """A vhost for one test only, for tests that must see an empty broker."""
    svc.need(svc.rabbitmq_available(), "RabbitMQ")
    name = f"hai-test-{svc.RUN_ID}-{next(_db_counter)}"
    url = svc.create_vhost(name)
    yield url
    svc.delete_vhost(name)


def databases() -> Iterator[Callable[[str], str]]:
    """Make fresh PostgreSQL databases named for this run; drop them when done."""
    svc.need(svc.postgres_available(), f"PostgreSQL at {svc.PG_HOST}:{svc.PG_PORT}")
    made: list[str] = []

    def make(label: str) -> str:
        name = f"hai_test_{svc.RUN_ID}_{label}_{next(_db_counter)}"
        made.append(name)
        return svc.create_database(name)

    yield make
    for name in made:
        try:
            svc.drop_database(name)
        except Exception:  # noqa: BLE001 - best effort clean-up
            pass


@pytest.fixture
def pg_database() -> Iterator[Callable[[str], str]]:
    """Fresh PostgreSQL databases for one test: `url = pg_database("inventory")`."""
    yield from databases()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that stop a broker or a database (their own, tests/private_services.py) start
    whole topologies of their own: slow, so they run last."""
    items.sort(key=lambda item: 1 if item.get_closest_marker("broker_stop") else 0)
