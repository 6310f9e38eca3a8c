"""The whole system in ONE child process on free ports (like `hai up`), for the browser tests.

One process means one in-process bus, so events cross services without a broker. Run as
`python -m tests.browser.system INVENTORY_PORT SCHEDULING_PORT ALERTS_PORT DASHBOARD_PORT`
with the HAI_* variables set; `RunningSystem` does that and waits until everything answers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from services.registry import SERVICES
from services.settings import HaiSettings
from tests.doubles import free_ports, retry_on_address_in_use
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 60.0




def serve_all(ports: list[int]) -> None:
    """In the child: migrate, bootstrap, start workers and serve the three APIs and the dashboard."""
    from services import cli
    from services.settings import get_settings
    from shared.logging import configure_logging
    from shared.migrations import upgrade

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json, "browser-system")
    servers: list[Any] = []
    on_stop: list[Any] = []
    for service, port in zip(SERVICES, ports[:3], strict=True):
        upgrade(service, settings.database_url(service))
        module = cli.service_module(service)
        runtime = module.bootstrap(settings)
        on_stop.append(cli._start_worker(module, runtime).stop)
        servers.append(cli._Server(cli._uvicorn_config(module.create_app(runtime), port, "127.0.0.1")))
    dashboard = cli.service_module("dashboard").create_app(settings)
    servers.append(cli._Server(cli._uvicorn_config(dashboard, ports[3], "127.0.0.1")))
    cli._run_servers(servers, on_stop)


@dataclass
class RunningSystem:
    """A started system: its settings (URLs, secret), the dashboard URL, and its log file."""

    settings: HaiSettings
    dashboard_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(cls, workdir: Path, **env_overrides: str) -> RunningSystem:
        """Start the child process on temp SQLite files and wait until every server answers;
        on "address already in use" (another process took a port first) try other ports."""
        return retry_on_address_in_use(
            lambda attempt: cls._start(workdir / f"try-{attempt}", **env_overrides))

    @classmethod
    def _start(cls, workdir: Path, **env_overrides: str) -> RunningSystem:
        workdir.mkdir(parents=True, exist_ok=True)
        ports = free_ports(4)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HAI_")}
        env.update({
            "HAI_ENV": "test",
            "HAI_INVENTORY_DATABASE_URL": f"sqlite:///{workdir}/inventory.db",
            "HAI_SCHEDULING_DATABASE_URL": f"sqlite:///{workdir}/scheduling.db",
            "HAI_ALERTS_DATABASE_URL": f"sqlite:///{workdir}/alerts.db",
            "HAI_INVENTORY_URL": f"http://127.0.0.1:{ports[0]}",
            "HAI_SCHEDULING_URL": f"http://127.0.0.1:{ports[1]}",
            "HAI_ALERTS_URL": f"http://127.0.0.1:{ports[2]}",
            "HAI_DASHBOARD_URL": f"http://127.0.0.1:{ports[3]}",
            "HAI_SWEEP_INTERVAL_SECONDS": "2",
            "HAI_OUTBOX_POLL_SECONDS": "0.2",
            "HAI_LOG_JSON": "1",
            "PYTHONPATH": str(ROOT),
        })
        env.update(env_overrides)
        log_path = workdir / "system.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.browser.system", *map(str, ports)],
                cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        values: dict[str, Any] = {k.removeprefix("HAI_").lower(): v for k, v in env.items()
                                  if k.startswith("HAI_")}
        settings = HaiSettings(**values)
        system = cls(settings, f"http://127.0.0.1:{ports[3]}", process, log_path)
        try:
            system.wait_ready()
        except Exception:
            system.stop()
            raise
        return system

    def wait_ready(self) -> None:
        urls = [self.settings.service_url(s) for s in SERVICES] + [self.dashboard_url]
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        for url in urls:
            def up(url: str = url) -> bool:
                if self.process.poll() is not None:
                    raise RuntimeError(f"system exited early; log:\n{self.log_tail()}")
                try:
                    return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
                except httpx.HTTPError:
                    return False

            try:
                wait_until(up, what=f"{url} to come up",
                           timeout_s=max(deadline - time.monotonic(), 0.1), interval_s=0.2)
            except AssertionError as exc:
                raise RuntimeError(f"{exc}; log:\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL if it lingers)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


if __name__ == "__main__":
    serve_all([int(p) for p in sys.argv[1:5]])
