"""One running production topology for the end-to-end tests (started once, shared)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests import services as svc
from tests.e2e.support import WebhookReceiver
from tests.e2e.topology import Topology, topology


@pytest.fixture(scope="session")
def e2e_databases() -> Iterator[Callable[[str], str]]:
    svc.need(svc.postgres_available(), f"PostgreSQL at {svc.PG_HOST}:{svc.PG_PORT}")
    made: list[str] = []

    def make(label: str) -> str:
        name = f"hai_test_{svc.RUN_ID}_e2e_{label}"
        made.append(name)
        return svc.create_database(name)

    yield make
    for name in made:
        try:
            svc.drop_database(name)
        except Exception:  # noqa: BLE001 - best effort clean-up
            pass


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
