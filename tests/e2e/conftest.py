"""One running production topology for the end-to-end tests (started once, shared)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests import services as svc
from tests.conftest import databases
from tests.doubles import WebhookReceiver
from tests.e2e.topology import Topology, topology


@pytest.fixture(scope="session")
def e2e_databases() -> Iterator[Callable[[str], str]]:
    """Fresh PostgreSQL databases for the whole end-to-end session."""
    yield from databases()


@pytest.fixture(scope="session")
def e2e_amqp_url() -> Iterator[str]:
    """A vhost of the end-to-end topology's own: its settings (e.g. retry delays) are its own."""
    svc.need(svc.rabbitmq_available(), f"RabbitMQ at {svc.AMQP_HOST}:{svc.AMQP_PORT}")
    name = f"hai-test-{svc.RUN_ID}-e2e"
    url = svc.create_vhost(name)
    yield url
    svc.delete_vhost(name)


@pytest.fixture(scope="session")
def system(e2e_amqp_url: str, e2e_databases: Callable[[str], str]) -> Iterator[Topology]:
    dbs = {s: e2e_databases(s) for s in ("inventory", "scheduling", "alerts")}
    with topology(e2e_amqp_url, dbs, label="e2e") as topo:
        yield topo


@pytest.fixture(scope="session")
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.close()
