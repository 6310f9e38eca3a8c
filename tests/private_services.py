"""A RabbitMQ node and a PostgreSQL cluster of one test's own, on their own ports in a temp dir:
the tests that stop or restart a broker or a database stop these, never the machine's (which
other test runs use at the same time)."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests import services as svc
from tests.doubles import free_port as private_port
from tests.doubles import retry_on_address_in_use

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


class PrivateRabbit:
    """A RabbitMQ node (management plugin off) that only its test talks to."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = private_port()
        self.dist_port = private_port({self.port})
        self.node = f"hai-test-{svc.RUN_ID}-{self.port}@localhost"
        home = workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        (workdir / "enabled_plugins").write_text("[].\n")
        (workdir / "rabbitmq.conf").write_text(f"listeners.tcp.1 = 127.0.0.1:{self.port}\n")
        self.env = {
            **os.environ, "HOME": str(home), "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(workdir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq.conf"),
            "RABBITMQ_PID_FILE": str(workdir / "rabbitmq.pid"),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """rabbitmqctl against this node only."""
        return subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args],
                              env=self.env, capture_output=True, text=True, timeout=timeout,
                              check=False)

    def start(self) -> None:
        with (self.workdir / "server.out").open("wb") as out:
            # cwd: the node writes its crash dumps (MnesiaCore.*) there, not in the checkout
            self.process = subprocess.Popen([str(RABBIT_BIN / "rabbitmq-server")], env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT,
                                            cwd=self.workdir, start_new_session=True)
        # `wait` waits for the node's pid file, then for the app: no race with the node's boot
        self._check(self.ctl("wait", "--timeout", "120", self.env["RABBITMQ_PID_FILE"],
                             timeout=180))

    def await_startup(self) -> None:
        self._check(self.ctl("await_startup", "--timeout", "120", timeout=180))

    def _check(self, result: subprocess.CompletedProcess[str]) -> None:
        if result.returncode != 0:
            out = self.workdir / "server.out"
            log = out.read_text(errors="replace")[-1500:] if out.exists() else ""
            raise RuntimeError(f"RabbitMQ node {self.node} did not start: "
                               f"{result.stdout[-500:]} {result.stderr[-500:]}; its output: {log}")

    def stop_app(self) -> None:
        assert self.ctl("stop_app").returncode == 0

    def start_app(self) -> None:
        assert self.ctl("start_app").returncode == 0
        self.await_startup()

    def shutdown(self) -> None:
        """Stop the node; whatever of its process group is left (a node that never finished
        booting) is killed, so that no node of ours outlives its test."""
        if self.process is None:
            return
        self.ctl("stop", timeout=60)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)  # its own session: only this node's processes
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                continue


@contextmanager
def private_rabbitmq(tmp_path: Path) -> Iterator[PrivateRabbit]:
    """A RabbitMQ node of this test's own, started and, at the end, stopped."""
    if not (RABBIT_BIN / "rabbitmq-server").exists():
        svc.need(False, "rabbitmq-server (for a private RabbitMQ node)")

    def start(attempt: int) -> PrivateRabbit:
        rabbit = PrivateRabbit(tmp_path / f"rabbitmq-{attempt}")
        try:
            rabbit.start()
        except BaseException:
            rabbit.shutdown()
            raise
        return rabbit

    rabbit = retry_on_address_in_use(start)  # its ports may be taken before it binds them
    try:
        yield rabbit
    finally:
        rabbit.shutdown()


class PrivatePostgres:
    """A PostgreSQL cluster (initdb, pg_ctl) that only its test talks to, owned by `postgres`."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            svc.need(False, "PostgreSQL's pg_ctl (for a private cluster)")
        self.bin = Path(found[-1]).parent
        # not under pytest's tmp_path: its parents are private to root, and the server runs as
        # postgres
        self.workdir = Path(tempfile.mkdtemp(prefix="hai-test-pg-"))
        self.data = self.workdir / "data"
        self.port = private_port()

    def _run(self, *args: str, timeout: float = 120) -> None:
        # initdb and postgres refuse to run as root: run them as the postgres user
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, timeout=timeout, capture_output=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "--no-sync")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        log = self.workdir / "server.log"
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                      "-l", str(log), "-w", "-t", "120", "start")
        except subprocess.CalledProcessError as exc:
            text = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise RuntimeError(f"PostgreSQL on port {self.port} did not start: {text}") from exc

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def private_postgresql() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of this test's own, started and, at the end, stopped and removed."""
    pg = PrivatePostgres()
    try:
        pg.init()

        def start(attempt: int) -> None:
            if attempt:  # the port was taken before the server bound it: another one
                pg.port = private_port()
            pg.start()

        retry_on_address_in_use(start)
        yield pg
    finally:
        try:
            pg.stop()
        except subprocess.CalledProcessError:
            pass  # not running (stopped by the test, or never started)
        shutil.rmtree(pg.workdir, ignore_errors=True)


@pytest.fixture
def own_rabbitmq(tmp_path: Path) -> Iterator[PrivateRabbit]:
    """A RabbitMQ node of this test's own (fixture form of private_rabbitmq)."""
    with private_rabbitmq(tmp_path) as rabbit:
        yield rabbit
