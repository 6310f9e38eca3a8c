"""Where the tests find RabbitMQ, PostgreSQL and Chromium, and what they do when those are missing.

With HAI_REQUIRE_SERVICES=1 (CI) a missing service fails the test; without it, the test skips
with the reason, so a laptop without them still runs everything else.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from urllib.parse import quote

import pytest

AMQP_HOST = os.environ.get("HAI_TEST_AMQP_HOST", "127.0.0.1")
AMQP_PORT = int(os.environ.get("HAI_TEST_AMQP_PORT", "5672"))
PG_HOST = os.environ.get("HAI_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("HAI_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("HAI_TEST_PG_USER", "postgres")
CHROMIUM = os.environ.get("HAI_TEST_CHROMIUM", "/usr/bin/chromium")

RUN_ID = os.environ.get("HAI_TEST_RUN_ID") or uuid.uuid4().hex[:10]


def services_required() -> bool:
    return os.environ.get("HAI_REQUIRE_SERVICES") == "1"


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def need(available: bool, what: str) -> None:
    """Fail (CI) or skip (laptop) when a real service the test needs is missing."""
    if available:
        return
    if services_required():
        pytest.fail(f"{what} is required (HAI_REQUIRE_SERVICES=1) but not reachable")
    pytest.skip(f"{what} not reachable; set it up or run .ci/run (HAI_REQUIRE_SERVICES=1)")


def rabbitmq_available() -> bool:
    return port_open(AMQP_HOST, AMQP_PORT)


def postgres_available() -> bool:
    return port_open(PG_HOST, PG_PORT)


def chromium_available() -> bool:
    return os.path.exists(CHROMIUM) or shutil.which("chromium") is not None


def rabbitmqctl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def create_vhost(name: str) -> str:
    """A fresh RabbitMQ vhost for this run; returns its AMQP URL."""
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    return f"amqp://guest:guest@{AMQP_HOST}:{AMQP_PORT}/{quote(name, safe='')}"


def delete_vhost(name: str) -> None:
    rabbitmqctl("delete_vhost", name)


def pg_admin_url() -> str:
    return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres"


def create_database(name: str) -> str:
    """A fresh PostgreSQL database; returns its SQLAlchemy URL."""
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres",
                         autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres",
                         autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
