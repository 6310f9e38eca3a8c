"""Inventory integration fixtures: the app on a PostgreSQL database of its own, and real processes."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import inspect, text

from shared.clock import MovableClock
from shared.db import make_engine
from shared.messaging.inproc import InProcessBus
from shared.migrations import upgrade
from tests import services as svc
from tests.doubles import free_port, retry_on_address_in_use
from tests.factories import T0
from tests.helpers import Harness, start_service, wait_until
from tests.helpers import test_settings as make_settings

ROOT = Path(__file__).resolve().parents[3]
HAI = str(Path(sys.executable).parent / "hai")
_names = itertools.count()


def pg_url(label: str) -> tuple[str, str]:
    """A fresh PostgreSQL database for a module-wide fixture: (name, url)."""
    svc.need(svc.postgres_available(), f"PostgreSQL at {svc.PG_HOST}:{svc.PG_PORT}")
    name = f"hai_test_{svc.RUN_ID}_{label}_m{next(_names)}"
    return name, svc.create_database(name)


@pytest.fixture(scope="module")
def inventory_database() -> Iterator[str]:
    """A migrated inventory database for the module's tests, emptied before each one."""
    name, url = pg_url("inventory")
    upgrade("inventory", url)
    yield url
    svc.drop_database(name)


@pytest.fixture
def inventory(inventory_database: str, tmp_path: Path) -> Iterator[Harness]:
    """The inventory app on a PostgreSQL database that holds nothing another test left (every
    table emptied, the catalogue seeded again), with a movable clock and in-process bus."""
    engine = make_engine(inventory_database)
    with engine.begin() as conn:
        tables = [t for t in inspect(conn).get_table_names() if t != "alembic_version"]
        conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables)
                          + " RESTART IDENTITY CASCADE"))
    engine.dispose()
    settings = make_settings(tmp_path, inventory_database_url=inventory_database)
    harness = start_service("inventory", settings, clock=MovableClock(T0), bus=InProcessBus())
    yield harness
    harness.runtime.engine.dispose()




class ServiceProcess:
    """`hai serve inventory` running as its own process on a free port."""

    def __init__(self, env: dict[str, str], *, worker: bool = False) -> None:
        self.env, self.worker = env, worker
        # another process may take the port first: then start again on another one
        retry_on_address_in_use(self._start)

    def _start(self, attempt: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [HAI, "serve", "inventory", "--port", str(self.port)]
        if not self.worker:
            args.append("--no-worker")
        self.proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **self.env},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_until(self._up, what=f"inventory to answer on {self.url}", timeout_s=30,
                       ignoring=(httpx.TransportError,))
        except BaseException:
            self.stop()
            raise

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            error = self.proc.stderr.read().decode()[-2000:] if self.proc.stderr else ""
            raise RuntimeError(f"service exited: {error}")
        return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
