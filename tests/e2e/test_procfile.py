"""deploy/Procfile, run by honcho as an operator would, brings the whole topology up on
PostgreSQL and RabbitMQ: every API ready, the dashboard answering."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests import services as svc
from tests.doubles import free_ports
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_honcho_runs_the_procfile(e2e_databases, tmp_path):
    svc.need(svc.rabbitmq_available(), "RabbitMQ")
    vhost = f"hai-test-{svc.RUN_ID}-procfile"
    amqp = svc.create_vhost(vhost)
    names = ("inventory", "scheduling", "alerts", "dashboard")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAI_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env["HAI_AMQP_URL"] = amqp
    for name, port in ports.items():
        env[f"{name.upper()}_PORT"] = str(port)
        env[f"HAI_{name.upper()}_URL"] = f"http://127.0.0.1:{port}"
    for name in ("inventory", "scheduling", "alerts"):
        env[f"HAI_{name.upper()}_DATABASE_URL"] = e2e_databases(f"procfile_{name}")
    log = (tmp_path / "honcho.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "honcho", "start", "-f", "deploy/Procfile",
                             "-d", str(ROOT)], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        pending = dict(ports)

        def all_ready() -> bool:
            for name, port in list(pending.items()):
                path = "/healthz" if name == "dashboard" else "/readyz"
                try:
                    if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code == 200:
                        del pending[name]
                except httpx.HTTPError:
                    pass
            return not pending

        try:
            wait_until(all_ready, what="every Procfile process ready", timeout_s=90,
                       interval_s=0.5)
        except AssertionError:
            raise AssertionError(f"not ready: {pending}\n"
                                 f"{(tmp_path / 'honcho.log').read_text()[-4000:]}") from None
        assert proc.poll() is None
        # honcho's own log names each process it started with its pid
        text = (tmp_path / "honcho.log").read_text()
        pids = [int(p) for p in re.findall(r"_worker_\d\.1 started \(pid=(\d+)\)", text)]
        assert len(pids) == 6, text[-3000:]  # two workers for each of the three services
        # and alerts' abnormal flows in a worker of their own, scheduling's relay in another
        pids += [int(p) for p in re.findall(r"(?:alerts_flow|scheduling_relay)\.1 started "
                                            r"\(pid=(\d+)\)", text)]
        assert len(pids) == 8, text[-3000:]
        for pid in pids:
            os.kill(pid, 0)  # alive
        # honcho starts each in a session of its own (the Procfile's `exec`: the worker, not
        # its `sh -c`, leads it): where the kernel groups the CPU by session (autogroups), the
        # bulk workers' `--nice 10` lowers their session's group too, or it would weigh nothing
        # against the flow worker, the relay and PostgreSQL's backends
        if Path("/proc/self/autogroup").exists():
            started = {name: int(pid) for name, pid in
                       re.findall(r"(\w+)\.1 started \(pid=(\d+)\)", text)}
            bulk = {"alerts_worker_1", "alerts_worker_2", "scheduling_worker_1",
                    "scheduling_worker_2"}

            def group_nice() -> dict[str, int]:
                return {name: int(Path(f"/proc/{started[name]}/autogroup").read_text().split()[-1])
                        for name in (*bulk, "alerts_flow", "scheduling_relay", "alerts")}

            seen: dict[str, int] = {}

            def lowered() -> bool:
                seen.update(group_nice())  # the last reading, for the failure's message
                return all(seen[name] == 10 for name in bulk)

            try:
                wait_until(lowered, what="the bulk workers' autogroups at nice 10", timeout_s=30)
            except AssertionError as exc:
                raise AssertionError(f"{exc}; autogroup nice by process: {seen}") from None
            assert {name: nice for name, nice in seen.items() if name not in bulk} == {
                "alerts_flow": 0, "scheduling_relay": 0, "alerts": 0}

        def relaying() -> set[str]:
            """The processes whose relay of scheduling's outbox listens or stands by."""
            return {ln.split(" ", 1)[1].split(" |", 1)[0].strip()
                    for ln in (tmp_path / "honcho.log").read_text().splitlines()
                    if ("outbox.listening" in ln or "outbox.standing_by" in ln)
                    and "hai_outbox_scheduling" in ln}

        # scheduling's outbox is relayed by its relay process alone, its workers relay nothing
        wait_until(lambda: "scheduling_relay.1" in relaying(), what="scheduling's relay listening",
                   timeout_s=30)
        assert relaying() == {"scheduling_relay.1"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        svc.delete_vhost(vhost)
