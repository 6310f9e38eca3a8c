"""Inventory integration fixtures: the app on a PostgreSQL database of its own, and real processes."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import inspect, text

from shared.clock import MovableClock
from shared.db import make_engine
from shared.messaging.inproc import InProcessBus
from shared.migrations import upgrade
from tests import services as svc
from tests.helpers import Harness, start_service
from tests.helpers import test_settings as make_settings

NOW = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
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
    harness = start_service("inventory", settings, clock=MovableClock(NOW), bus=InProcessBus())
    yield harness
    harness.runtime.engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """`hai serve inventory` running as its own process on a free port."""

    def __init__(self, env: dict[str, str], *, worker: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [HAI, "serve", "inventory", "--port", str(self.port)]
        if not worker:
            args.append("--no-worker")
        self.proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited: {self.proc.stderr.read().decode()[-2000:]}"
                                   if self.proc.stderr else "service exited")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("service did not start in 30 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
