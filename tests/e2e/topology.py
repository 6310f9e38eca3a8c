"""The production topology as processes: each service's API plus two workers, on PostgreSQL
and RabbitMQ (a vhost and databases of this run's own), like deploy/Procfile."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.auth import mint_token
from shared.settings import DEV_JWT_SECRET
from tests.doubles import free_ports, retry_on_address_in_use
from tests.helpers import wait_until

SERVICES = ("inventory", "scheduling", "alerts")
LOG_DIR = Path(__file__).resolve().parents[2] / "build" / "e2e-logs"




@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen and self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class Topology:
    env: dict[str, str]
    ports: dict[str, int]
    procs: dict[str, Proc] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def client(self, service: str, *roles: str, sub: str = "e2e") -> httpx.Client:
        token = mint_token(sub, list(roles) or ["admin"], secret=self.env["HAI_JWT_SECRET"])
        return httpx.Client(base_url=self.url(service), timeout=15,
                            headers={"Authorization": f"Bearer {token}"})

    def logs(self) -> dict[str, str]:
        return {name: p.log_path.read_text(errors="replace") if p.log_path.exists() else ""
                for name, p in self.procs.items()}

    def start(self, name: str) -> None:
        self.procs[name].start()

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.kill(signal.SIGTERM)

    def wait_ready(self, timeout: float = 60) -> None:
        """Every API (and the dashboard) answers; an API that exits instead (its port taken
        by another process first, say) fails at once with its log."""
        deadline = time.monotonic() + timeout
        for service in (*SERVICES, "dashboard"):
            if service not in self.ports:
                continue
            path = "/healthz" if service == "dashboard" else "/readyz"

            def ready(service: str = service, url: str = self.url(service) + path) -> bool:
                if not self.procs[service].alive():
                    raise RuntimeError(f"{service} exited; its log:\n{self.logs()[service][-3000:]}")
                return httpx.get(url, timeout=2).status_code == 200

            try:
                wait_until(ready, what=f"{service} ready", ignoring=(httpx.HTTPError,),
                           timeout_s=max(deadline - time.monotonic(), 0.1))
            except AssertionError as exc:
                raise TimeoutError(f"{exc}; logs:\n{self.logs()}") from None


def hai(*args: str) -> list[str]:
    return [sys.executable, "-m", "services.cli_main", *args]


@contextmanager
def topology(amqp_url: str, db_urls: dict[str, str], *, workers: int = 2,
             sweep_seconds: int = 2, dashboard: bool = False,
             extra_env: dict[str, str] | None = None, label: str = "e2e") -> Iterator[Topology]:
    """Start every API (no worker) and `workers` workers per service; stop them all after.
    The ports are chosen before the processes bind them: when another process takes one
    first, everything starts again on other ports."""

    def start(attempt: int) -> Topology:
        topo = _topology(amqp_url, db_urls, workers=workers, sweep_seconds=sweep_seconds,
                         dashboard=dashboard, extra_env=extra_env,
                         run_dir=LOG_DIR / f"{label}-{int(time.time())}-{attempt}")
        try:
            for proc in topo.procs.values():
                proc.start()
            topo.wait_ready()
        except BaseException:
            topo.stop()
            raise
        return topo

    topo = retry_on_address_in_use(start)
    try:
        yield topo
    finally:
        topo.stop()


def _topology(amqp_url: str, db_urls: dict[str, str], *, workers: int, sweep_seconds: int,
              dashboard: bool, extra_env: dict[str, str] | None, run_dir: Path) -> Topology:
    """The processes of a topology on free ports, migrated, not started yet."""
    ports = dict(zip([*SERVICES, "dashboard"], free_ports(len(SERVICES) + 1), strict=True))
    if not dashboard:
        del ports["dashboard"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAI_")}
    env.update({
        "HAI_ENV": "test",
        "HAI_AMQP_URL": amqp_url,
        "HAI_JWT_SECRET": DEV_JWT_SECRET,
        "HAI_SWEEP_INTERVAL_SECONDS": str(sweep_seconds),
        "HAI_OUTBOX_POLL_SECONDS": "0.2",
        "HAI_CONSUMER_RETRY_DELAY_MS": "500",
        "HAI_PAGE_SWEEP_SECONDS": "0.5",
        "HAI_PAGE_FIRST_RETRY_SECONDS": "0.5",
        "HAI_LOG_LEVEL": "INFO",
    })
    for s in SERVICES:
        env[f"HAI_{s.upper()}_DATABASE_URL"] = db_urls[s]
        env[f"HAI_{s.upper()}_URL"] = f"http://127.0.0.1:{ports[s]}"
    if dashboard:
        env["HAI_DASHBOARD_URL"] = f"http://127.0.0.1:{ports['dashboard']}"
    env.update(extra_env or {})
    topo = Topology(env=env, ports=ports)
    for s in SERVICES:
        # migrate once up front so that replicas start on a ready schema
        subprocess.run(hai("migrate", s), env=env, check=True, capture_output=True, timeout=120)
        topo.procs[s] = Proc(s, hai("serve", s, "--no-worker", "--port", str(ports[s])), env,
                             run_dir / f"{s}.log")
        # as deploy/Procfile: alerts' abnormal flows (and their pages) in a worker of their own
        queues = ["--queue", "alerts.events"] if s == "alerts" else []
        for i in range(1, workers + 1):
            topo.procs[f"{s}_worker_{i}"] = Proc(f"{s}_worker_{i}", hai("worker", s, *queues), env,
                                                 run_dir / f"{s}_worker_{i}.log")
        if s == "alerts":
            topo.procs["alerts_flow"] = Proc("alerts_flow", hai("worker", s, "--queue", "alerts.flow",
                                                                 "--no-relay"),
                                             env, run_dir / "alerts_flow.log")
    if dashboard:
        topo.procs["dashboard"] = Proc("dashboard", hai("serve", "dashboard", "--port",
                                                        str(ports["dashboard"])), env,
                                       run_dir / "dashboard.log")
    return topo
