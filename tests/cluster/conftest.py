"""The consortium's shape on this host: three RabbitMQ nodes, a PostgreSQL primary with a
synchronous standby, and the services as processes given every broker address and both
database hosts. Started once for the cluster tests (`make cluster-test`), removed after."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType

import pytest

from tests.cluster.harness import RabbitCluster, ReplicatedPostgres, rabbit_cluster, replicated_postgresql
from tests.doubles import WebhookReceiver
from tests.e2e.topology import SERVICES, Topology, topology

RUN_FLAG = "HAI_CLUSTER_TESTS"


@pytest.hookimpl(trylast=True)  # after pytest-randomly's shuffle
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without HAI_CLUSTER_TESTS=1 (set by `make cluster-test`) the cluster tests are skipped:
    they take several minutes. The database failover runs last (it consumes the standby)."""
    run = os.environ.get(RUN_FLAG) == "1"
    for item in items:
        if item.get_closest_marker("cluster") and not run:
            item.add_marker(pytest.mark.skip(reason=f"cluster tests: make cluster-test ({RUN_FLAG}=1)"))
    items.sort(key=lambda item: 1 if item.get_closest_marker("consumes_standby") else 0)


@dataclass
class Consortium:
    cluster: RabbitCluster
    pg: ReplicatedPostgres
    system: Topology
    receiver: WebhookReceiver


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM too runs the teardown: no node or cluster is left behind


@pytest.fixture(scope="session")
def consortium() -> Iterator[Consortium]:
    previous = signal.signal(signal.SIGTERM, _interrupt)
    receiver = WebhookReceiver()
    try:
        with rabbit_cluster() as cluster, replicated_postgresql() as pg:
            dbs = {s: pg.create_database(f"cluster_{s}") for s in SERVICES}
            # heartbeats every 5 s: a client on a frozen node notices within ~10 s (README)
            with topology(cluster.urls, dbs, label="cluster",
                          # one page per alert, counted per pump: the storm limit (pages past
                          # HAI_PAGE_RATE_PER_MINUTE grouped into one) is lifted, as in bench/
                          extra_env={"HAI_AMQP_HEARTBEAT_SECONDS": "5",
                                     "HAI_PAGE_RATE_PER_MINUTE": "1000000"}) as system:
                yield Consortium(cluster, pg, system, receiver)
    finally:
        receiver.close()
        signal.signal(signal.SIGTERM, previous)
