"""A throwaway RabbitMQ vhost and PostgreSQL database for one benchmark run."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import httpx

from tests.helpers import wait_until

AMQP_HOST = os.environ.get("HAI_BENCH_AMQP_HOST", "127.0.0.1")
AMQP_PORT = int(os.environ.get("HAI_BENCH_AMQP_PORT", "5672"))
PG_HOST = os.environ.get("HAI_BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("HAI_BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("HAI_BENCH_PG_USER", "postgres")


def rabbitmqctl(*args: str, attempts: int = 3) -> subprocess.CompletedProcess[str]:
    """Run rabbitmqctl, again if it fails (the CLI sometimes does on a loaded node); raise after."""
    for attempt in range(1, attempts + 1):
        result = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True,
                                timeout=60, check=False)
        if result.returncode == 0:
            return result
        if attempt < attempts:
            time.sleep(attempt)
    raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed ({result.returncode}): "
                       f"{(result.stderr or result.stdout).strip()[:500]}")


@contextmanager
def vhost(label: str) -> Iterator[str]:
    """A fresh vhost for the block; yields its AMQP URL and deletes it afterwards."""
    name = f"hai-bench-{label}-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{AMQP_HOST}:{AMQP_PORT}/{quote(name, safe='')}"
    finally:
        rabbitmqctl("delete_vhost", name)


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres",
                         autocommit=True) as conn:
        conn.execute(sql)


@contextmanager
def database(label: str) -> Iterator[str]:
    """A fresh PostgreSQL database for the block; yields its SQLAlchemy URL, drops it after."""
    name = f"hai_bench_{label}_{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_ready(url: str, proc: subprocess.Popen[bytes], path: str = "/readyz",
               timeout_s: float = 90.0) -> None:
    """Wait until a started service answers `path` with 200; fail if it exits first."""

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        return httpx.get(f"{url}{path}", timeout=2).status_code == 200

    wait_until(ready, what=f"{url}{path} to answer 200", timeout_s=timeout_s,
               ignoring=(httpx.HTTPError,))


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a started process, killing it if it does not end."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ok(response: httpx.Response, what: str) -> dict[str, Any]:
    """The JSON body of a successful answer, or an error naming what failed."""
    if response.status_code >= 300:
        raise RuntimeError(f"{what}: HTTP {response.status_code} {response.text[:500]}")
    return dict(response.json())
