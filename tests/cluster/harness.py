"""A three-node RabbitMQ cluster and a PostgreSQL primary with a synchronous standby, all of this
run's own: node names `hai-test-…@localhost`, ports from the private range, data, logs and the
Erlang cookie in a temp dir, removed afterwards (also when the test fails or is interrupted).

The machine's broker (5672, rabbit@<host>) and database (5432) are never touched: every
`rabbitmqctl` here carries `-n` of one of our nodes (PrivateRabbit.ctl), and a node is stopped
by signalling its own process group (each node runs in a session of its own)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests import services as svc
from tests.doubles import retry_on_address_in_use
from tests.private_services import RABBIT_BIN, PrivatePostgres, PrivateRabbit

NODES = 3


def _signal_group(process: subprocess.Popen[bytes] | None, sig: int) -> None:
    if process is not None and process.poll() is None:
        try:
            os.killpg(process.pid, sig)  # the node's own session: only its processes
        except ProcessLookupError:
            pass


class ClusterNode(PrivateRabbit):
    """One node of the cluster: a PrivateRabbit with the cluster's cookie, killable and
    pausable as a whole (its beam, erl_child_setup and helpers share its process group)."""

    def __init__(self, workdir: Path, cookie: str) -> None:
        super().__init__(workdir)
        cookie_file = workdir / "home" / ".erlang.cookie"
        cookie_file.write_text(cookie)
        cookie_file.chmod(0o400)
        self.paused = False

    def kill(self) -> None:
        """kill -9 the node (no goodbye to its peers or clients)."""
        self.resume()
        _signal_group(self.process, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    def pause(self) -> None:
        """SIGSTOP: the node's sockets stay open and nothing answers on them."""
        _signal_group(self.process, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.paused:
            _signal_group(self.process, signal.SIGCONT)
            self.paused = False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def teardown(self) -> None:
        """Stop the node at once: SIGTERM to its group, then SIGKILL (its data is thrown away)."""
        self.resume()
        for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            if not self.alive():
                return
            _signal_group(self.process, sig)
            try:
                assert self.process is not None
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue


class RabbitCluster:
    """Three RabbitMQ nodes joined in one cluster (`rabbitmqctl -n … join_cluster`)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.cookie = secrets.token_hex(16)
        self.nodes: list[ClusterNode] = []

    @property
    def urls(self) -> str:
        """The services' HAI_AMQP_URL: every node, separated by commas."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> ClusterNode:
        return next(n for n in self.nodes if n.node == name)

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """rabbitmqctl against the first running, unpaused node of ours."""
        for node in self.nodes:
            if node.alive() and not node.paused:
                return node.ctl(*args, timeout=timeout)
        raise RuntimeError("no node of the cluster is running")

    def _start_node(self, index: int) -> ClusterNode:
        def start(attempt: int) -> ClusterNode:
            node = ClusterNode(self.workdir / f"node{index}-{attempt}", self.cookie)
            try:
                node.start()
            except BaseException:
                node.teardown()
                raise
            return node

        return retry_on_address_in_use(start)

    def start(self) -> None:
        started: dict[int, ClusterNode | BaseException] = {}

        def boot(i: int) -> None:
            try:
                started[i] = self._start_node(i)
            except BaseException as exc:  # noqa: BLE001 - re-raised below, on the test's thread
                started[i] = exc

        threads = [threading.Thread(target=boot, args=(i,)) for i in range(NODES)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.nodes = [n for n in (started[i] for i in range(NODES)) if isinstance(n, ClusterNode)]
        errors = [e for e in started.values() if isinstance(e, BaseException)]
        if errors:
            raise errors[0]
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.stop_app()
            joined = node.ctl("join_cluster", first.node)
            assert joined.returncode == 0, joined.stderr
            node.start_app()
        running = self.running_nodes()
        assert running == {n.node for n in self.nodes}, running

    def running_nodes(self) -> set[str]:
        out = self.ctl("eval", "rabbit_nodes:all_running().").stdout
        return {name for name in out.replace("[", " ").replace("]", " ").replace(",", " ")
                .replace("'", " ").split() if "@" in name}

    def restart(self, node: ClusterNode) -> None:
        """Start a killed node again on its data: it rejoins the cluster by itself."""
        node.start()
        node.await_startup()

    def queues(self, vhost: str = "/") -> dict[str, tuple[str, list[str]]]:
        """Each quorum queue's leader and members."""
        out = self.ctl("list_queues", "-p", vhost, "name", "type", "leader", "members",
                       "--quiet", "--formatter", "json").stdout

        return {q["name"]: (q["leader"], list(q["members"]))
                for q in json.loads(out or "[]") if q.get("type") == "quorum"}

    def messages(self, vhost: str = "/") -> dict[str, int]:
        """Messages (ready and unacknowledged) per queue."""

        out = self.ctl("list_queues", "-p", vhost, "name", "messages", "--quiet",
                       "--formatter", "json").stdout
        return {q["name"]: int(q["messages"] or 0) for q in json.loads(out or "[]")}

    def connections(self) -> list[tuple[str, int, int]]:
        """Each client connection as (its name, the port of the node it is on, the client's pid)."""
        out = self.ctl("list_connections", "client_properties", "port", "--quiet",
                       "--formatter", "json").stdout
        found = []
        for conn in json.loads(out or "[]"):
            props = {p[0]: p[2] for p in conn["client_properties"]}
            found.append((str(props.get("connection_name", "")), int(conn["port"]),
                          int(props.get("hai_pid", 0))))
        return found

    def node_on_port(self, port: int) -> ClusterNode:
        return next(n for n in self.nodes if n.port == port)

    def teardown(self) -> None:
        threads = [threading.Thread(target=n.teardown) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


@contextmanager
def rabbit_cluster() -> Iterator[RabbitCluster]:
    """Three clustered RabbitMQ nodes of this run's own; stopped and removed at the end."""
    if not (RABBIT_BIN / "rabbitmq-server").exists():
        svc.need(False, "rabbitmq-server (for a private RabbitMQ cluster)")
    workdir = Path(tempfile.mkdtemp(prefix="hai-cluster-rmq-"))
    cluster = RabbitCluster(workdir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.teardown()
        shutil.rmtree(workdir, ignore_errors=True)


class ReplicatedPostgres:
    """A primary and a standby streaming from it (pg_basebackup -R), synchronous: a commit
    returns once the standby has it (synchronous_standby_names = '*')."""

    def __init__(self) -> None:
        self.primary = PrivatePostgres()
        self.standby = PrivatePostgres()
        self.promoted = False

    def _options(self, pg: PrivatePostgres, *extra: str) -> str:
        return " ".join([f"-p {pg.port} -k {pg.workdir} -c listen_addresses=127.0.0.1",
                         "-c fsync=off -c max_connections=300 -c wal_level=replica",
                         "-c synchronous_commit=on", *extra])

    def _start(self, pg: PrivatePostgres, options: str) -> None:
        log = pg.workdir / "server.log"
        try:
            pg._run(str(pg.bin / "pg_ctl"), "-D", str(pg.data), "-o", options, "-l", str(log),
                    "-w", "-t", "120", "start")
        except subprocess.CalledProcessError as exc:
            text = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise RuntimeError(f"PostgreSQL on port {pg.port} did not start: {text}") from exc

    def start(self) -> None:
        self.primary.init()
        self._start(self.primary, self._options(
            self.primary, "-c synchronous_standby_names='*'"))
        if os.geteuid() == 0:
            shutil.chown(self.standby.workdir, "postgres", "postgres")
        self.standby._run(str(self.standby.bin / "pg_basebackup"), "-h", "127.0.0.1",
                          "-p", str(self.primary.port), "-U", "postgres",
                          "-D", str(self.standby.data), "-R", "-X", "stream", "--no-sync")
        self._start(self.standby, self._options(self.standby))
        self.wait_streaming()

    def wait_streaming(self, timeout_s: float = 60) -> None:
        """Until the primary sees its standby as synchronous."""
        import psycopg

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with psycopg.connect(host="127.0.0.1", port=self.primary.port, user="postgres",
                                 dbname="postgres", autocommit=True) as conn:
                row = conn.execute("SELECT sync_state FROM pg_stat_replication").fetchone()
            if row and row[0] == "sync":
                return
            time.sleep(0.5)
        raise RuntimeError("the standby did not become synchronous")

    def url(self, database: str) -> str:
        """Both hosts; libpq connects to whichever is the primary (read-write) now."""
        return (f"postgresql+psycopg://postgres@/{database}?host=127.0.0.1:{self.primary.port}"
                f"&host=127.0.0.1:{self.standby.port}&target_session_attrs=read-write"
                "&connect_timeout=3")

    def create_database(self, name: str) -> str:
        self.primary.create_database(name)
        return self.url(name)

    def kill_primary(self) -> None:
        """The primary stops at once (`pg_ctl stop -m immediate`: no checkpoint, like a crash)."""
        self.primary._run(str(self.primary.bin / "pg_ctl"), "-D", str(self.primary.data),
                          "-m", "immediate", "-w", "stop")

    def promote(self) -> None:
        self.standby._run(str(self.standby.bin / "pg_ctl"), "-D", str(self.standby.data),
                          "-w", "promote")
        self.promoted = True

    def teardown(self) -> None:
        for pg in (self.standby, self.primary):
            try:
                pg._run(str(pg.bin / "pg_ctl"), "-D", str(pg.data), "-m", "immediate", "-w",
                        "stop", timeout=60)
            except subprocess.CalledProcessError:
                pass  # not running (stopped by the test, or never started)
            shutil.rmtree(pg.workdir, ignore_errors=True)


@contextmanager
def replicated_postgresql() -> Iterator[ReplicatedPostgres]:
    """A primary and its synchronous standby of this run's own; stopped and removed at the end."""
    pair = ReplicatedPostgres()
    try:
        pair.start()
        yield pair
    finally:
        pair.teardown()
