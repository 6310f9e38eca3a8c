"""Time to page: from the 201 of a refill whose flow is abnormal to the webhook page arriving.

Inventory, scheduling and alerts run as deploy/Procfile runs them (each API `--no-worker`, its
background work in worker processes; `--one-process`: each service one `hai serve`), on their
own PostgreSQL databases and a fresh RabbitMQ vhost; this process is the nurse (posting
refills), the on-call's webhook receiver, and the on-call resolving each alert a second after
its page (RESOLVE_AFTER_S) so that its pump can page again.

    .venv/bin/python -m bench.time_to_page [--readings 1000 --rate 20 --pumps 150] [--one-process]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench._cpu import CpuMeter, per_unit_ms
from bench._infra import database, ok, vhost, wait_ready
from bench._infra import stop as stop_process
from shared.auth import mint_token
from shared.settings import DEV_JWT_SECRET
from tests.doubles import WebhookReceiver, free_port

ROOT = Path(__file__).resolve().parent.parent
HAI = str(ROOT / ".venv" / "bin" / "hai")
CENTER = "bench-center"
AIM_P99_MS = 500.0
# each pump's readings are a day apart (the minimum between two fills) and all within the last
# RECENT_DAYS days: every refill's next appointment (14 days on, or 3 days before a 1.5x flow
# empties the 30 mL reservoir: 17 days) is then not yet due soon (48 h before), so a reading
# makes only its flow alert, as a refill of the day does; readings dated further back made each
# refill an overdue appointment too (about 3 silenced alerts per reading until 2026-12-02)
RECENT_DAYS = 10
# a page's alert is resolved this long after the page arrived, as a nurse resolves it: never in
# the same milliseconds as the pager records that page (a race no one on a ward can make, which
# made the page path wait on the resolve's row locks), and soon enough for the pumps to go round
RESOLVE_AFTER_S = 1.0
QUIET_KINDS = ("refill_due_soon", "refill_overdue", "reservoir_near_empty", "delivery_late",
               "delivery_rejected", "device_recalled_implanted", "system_stale")
SERVICES = ("inventory", "scheduling", "alerts")


@dataclass
class PumpState:
    """One bench pump: its readings so far (the next is a day after the last) and the reading
    waiting for its page."""

    serial: str
    labeled_flow_ml_per_day: float
    reservoir_ml: float
    base: datetime
    readings: int = 0
    free: threading.Event = field(default_factory=threading.Event)
    t_201: float | None = None
    wall_201: float | None = None
    phase: str = ""


@dataclass
class System:
    """The three services started for a run: their addresses, databases, logs and the webhook."""

    urls: dict[str, str]
    dbs: dict[str, str]
    headers: dict[str, str]
    receiver: WebhookReceiver
    logdir: Path
    amqp_url: str
    procs: dict[str, subprocess.Popen[bytes]]

    def client(self, service: str) -> httpx.Client:
        return httpx.Client(base_url=self.urls[service], headers=self.headers, timeout=30)

    def cpu_meter(self) -> CpuMeter:
        """A running CpuMeter of the system's processes and of their databases' backends."""
        return CpuMeter({name: p.pid for name, p in self.procs.items()}, self.dbs).start()


def _start(name: str, args: list[str], env: dict[str, str], logdir: Path) -> subprocess.Popen[bytes]:
    """`hai ARGS`, logging to NAME.log; under bench._sampler's profiler when HAI_BENCH_PROFILE
    names it (comma-separated names; the profile goes to HAI_BENCH_PROFILE_DIR, default /tmp)."""
    log = (logdir / f"{name}.log").open("wb")
    command = [HAI, *args]
    if name in env.get("HAI_BENCH_PROFILE", "").split(","):
        out = Path(env.get("HAI_BENCH_PROFILE_DIR", "/tmp")) / f"hai-profile-{name}-{os.getpid()}.json"
        print(f"profiling {name} into {out}", file=sys.stderr)
        command = [sys.executable, "-m", "bench._sampler", str(out), "--", *command[1:]]
    # each in a session of its own, as honcho starts deploy/Procfile's processes (and so its
    # workers' `--nice` lowers their session's autogroup: shared.runtime.lower_cpu_priority)
    return subprocess.Popen(command, env={**env, "PYTHONPATH": str(ROOT), "PGAPPNAME": name},
                            stdout=log, stderr=subprocess.STDOUT, cwd=str(logdir),
                            start_new_session=True)


# deploy/Procfile's topology: each service's API alone (`--no-worker`), its background work
# (outbox relay, consumers, jobs) in worker processes; so an event an API commits reaches the
# broker through another process's relay, as in production. Alerts' abnormal flow readings (and
# their pages) have a worker of their own, the rest of its events two at `--nice 10`, as the
# Procfile runs them (a burst is raised by both); scheduling's outbox relay a process of its own
# and its sweep and consumers one worker at `--nice 10` (the Procfile runs two), inventory one
# worker (the Procfile runs two): a second replica changes no path a page or a burst's alert
# takes, and would take its share of the bench's CPU. Each process is named in PostgreSQL's
# pg_stat_activity (PGAPPNAME), to see which one waits on what.
PROCFILE_WORKERS = {
    "inventory_worker": ["worker", "inventory"],
    "scheduling_relay": ["worker", "scheduling", "--no-jobs", "--no-consumers"],
    "scheduling_worker": ["worker", "scheduling", "--no-relay", "--nice", "10"],
    "alerts_flow": ["worker", "alerts", "--queue", "alerts.flow", "--no-relay"],
    "alerts_events": ["worker", "alerts", "--queue", "alerts.events", "--nice", "10"],
    "alerts_events_2": ["worker", "alerts", "--queue", "alerts.events", "--nice", "10"],
}


@contextmanager
def system(label: str, *, env: dict[str, str] | None = None,
           before_start: Callable[[dict[str, str]], None] | None = None,
           procfile: bool = True) -> Iterator[System]:
    """Start the three services on a fresh vhost and databases (`before_start(dbs)` may fill
    them first): as deploy/Procfile runs them (PROCFILE_WORKERS) when `procfile`, else each one
    `hai serve` process (API and worker together); stop them and drop everything after; print
    the log tails on a failure."""
    token = mint_token("bench", ["admin"], secret=os.environ.get("HAI_JWT_SECRET", DEV_JWT_SECRET))
    with ExitStack() as stack:
        amqp = stack.enter_context(vhost(label))
        dbs = {s: stack.enter_context(database(s[:3])) for s in SERVICES}
        if before_start is not None:
            before_start(dbs)
        ports = {s: free_port() for s in dbs}
        urls = {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}
        logdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"hai-bench-{label}-")))
        receiver = WebhookReceiver()
        stack.callback(receiver.close)
        # every reading pages the one bench recipient, past the storm limit (HAI_PAGE_RATE_PER_
        # MINUTE, as deployed: 20) after its first 20 pages of a minute: an abnormal flow's page is
        # critical, which the limit never holds (pages due together go as one message, each of
        # its alerts timed); a burst's warnings to one recipient go grouped, as deployed
        full_env = {**os.environ, "HAI_AMQP_URL": amqp, "HAI_LOG_LEVEL": "WARNING",
                    # as deploy/local.env: a flow's first page is the urgent lane's (split alerts)
                    "HAI_PAGER_URGENT_GRACE_SECONDS": "2",
                    **{f"HAI_{s.upper()}_DATABASE_URL": u for s, u in dbs.items()},
                    **{f"HAI_{s.upper()}_URL": u for s, u in urls.items()}, **(env or {})}
        procs = {s: _start(s, ["serve", s, "--port", str(ports[s])]
                           + (["--no-worker"] if procfile else []),
                           full_env, logdir) for s in dbs}
        if procfile:
            procs.update({name: _start(name, args, full_env, logdir)
                          for name, args in PROCFILE_WORKERS.items()})
        for proc in procs.values():
            stack.callback(stop_process, proc)
        try:
            for s in SERVICES:
                wait_ready(urls[s], procs[s])
            yield System(urls=urls, dbs=dbs, headers={"Authorization": f"Bearer {token}"},
                         receiver=receiver, logdir=logdir, amqp_url=amqp, procs=procs)
        except Exception:
            for log_file in sorted(logdir.glob("*.log")):
                tail = log_file.read_text(errors="replace")[-3000:]
                print(f"--- {log_file.stem} log (tail) ---\n{tail}", file=sys.stderr)
            raise


def _setup_pumps(inv: httpx.Client, sch: httpx.Client, n: int) -> list[PumpState]:
    """Register, implant, admit, start a therapy and make a first fill (RECENT_DAYS ago) for
    each pump (several pumps at once: a thousand take a minute, not ten)."""
    model = ok(inv.get("/v1/pump-models"), "pump models")["items"][0]
    now = datetime.now(UTC).replace(microsecond=0)
    base = now - timedelta(days=RECENT_DAYS)
    run = os.urandom(3).hex()

    def one(i: int) -> PumpState:
        serial, mrn = f"BENCH-{run}-{i:04d}", f"BMRN-{run}-{i:04d}"
        pump = ok(inv.post("/v1/pumps", json={
            "serial_number": serial, "model_code": model["code"], "lot_number": "BENCHLOT",
            "expiry_date": (now + timedelta(days=3650)).date().isoformat()}), "register pump")
        ok(inv.post(f"/v1/pumps/{serial}/implant", json={
            "patient_mrn": mrn, "implanted_at": (base - timedelta(days=1)).isoformat(),
            "center": CENTER}), "implant")
        ok(sch.post("/v1/patients", json={
            "mrn": mrn, "given_name": "Bench", "family_name": f"Patient{i}", "birth_date": "1960-01-01",
            "weight_kg": 70, "center": CENTER}), "patient")
        therapy = {"patient_mrn": mrn, "pump_serial": serial, "regimen": "saline_maintenance",
                   "start_on": base.date().isoformat()}
        deadline = time.monotonic() + 30
        while True:  # scheduling learns the implant from inventory's event
            r = sch.post("/v1/therapies", json=therapy)
            if r.status_code == 201 or time.monotonic() > deadline:
                ok(r, "therapy")
                break
            time.sleep(0.1)
        ok(sch.post("/v1/refills", json={
            "pump_serial": serial, "performed_at": base.isoformat(), "residual_volume_ml": 0,
            "fill_volume_ml": pump["reservoir_ml"], "fill_type": "saline"}), "first fill")
        state = PumpState(serial=serial, labeled_flow_ml_per_day=pump["labeled_flow_ml_per_day"],
                          reservoir_ml=pump["reservoir_ml"], base=base)
        state.free.set()
        return state

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


class FlowLoad:
    """Abnormal flow readings at a steady rate, each timed from its 201 to its page.

    The on-call of the bench centre is the system's webhook receiver; the centre's other kinds of
    alert are silenced, so only flow pages arrive there. Each page's alert is resolved
    `resolve_after_s` after the page arrived (RESOLVE_AFTER_S), so that its pump can page again,
    and the readings go round the pumps, each a day after its pump's last (RECENT_DAYS - 1 at
    most per pump); with `resolve_after_s` None, each pump reads once (as many patients' pumps
    as readings) and no alert is resolved. Each reading is counted in the phase it was posted
    in."""

    def __init__(self, sys_: System, *, pumps: int, readings: int, flow_factor: float = 1.5,
                 resolve_after_s: float | None = RESOLVE_AFTER_S) -> None:
        # resolved after a while, a pump reads again (a day later); never resolved, once
        self.readings_per_pump = RECENT_DAYS - 1 if resolve_after_s is not None else 1
        if pumps * self.readings_per_pump < readings:
            raise ValueError(f"{readings} readings need at least "
                             f"{-(-readings // self.readings_per_pump)} pumps ("
                             + (f"a day apart, within {RECENT_DAYS} days)"
                                if resolve_after_s is not None else "one reading each)"))
        self.inv, self.sch, self.alr = (sys_.client(s) for s in SERVICES)
        self.receiver = sys_.receiver
        self.flow_factor = flow_factor
        ok(self.alr.put(f"/v1/oncall/{CENTER}", json={"escalation_delay_seconds": 3600, "levels": [{
            "members": [{"name": "bench", "channel": "webhook", "address": self.receiver.url}],
            "rotation_start": "2026-01-01T00:00:00Z", "shift_hours": 24}]}), "on-call")
        now = datetime.now(UTC)
        for kind in QUIET_KINDS:  # only flow pages are measured; the past-dated refills make others
            ok(self.alr.post("/v1/silences", json={
                "matchers": {"kind": kind, "center": CENTER}, "starts_at": now.isoformat(),
                "ends_at": (now + timedelta(days=1)).isoformat(), "reason": "benchmark"}), "silence")
        self.pumps = _setup_pumps(self.inv, self.sch, pumps)
        self._next = 0  # where the round of the pumps goes on
        self.by_serial = {p.serial: p for p in self.pumps}
        self.latencies_ms: dict[str, list[float]] = defaultdict(list)
        self.to_alert_ms: dict[str, list[float]] = defaultdict(list)
        # the alerts side alone: the alert raised (its consumer) → the page arrived
        self.raised_to_page_ms: dict[str, list[float]] = defaultdict(list)
        # each page's (wall time of its 201, time to page in ms), by phase: when in a phase
        # the slow ones came
        self.timed: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.posted: dict[str, int] = defaultdict(int)
        self.skipped: dict[str, int] = defaultdict(int)
        self.early = 0
        self.sending_s = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._resolver = ThreadPoolExecutor(8)
        self.resolve_after_s = resolve_after_s
        # (when, alert id, pump): each page's alert, resolved in turn when its time comes
        self._to_resolve: queue.Queue[tuple[float, str, PumpState] | None] = queue.Queue()
        self._resolving = threading.Thread(target=self._resolve_in_turn, daemon=True)
        self._resolving.start()
        self._posters = ThreadPoolExecutor(16)
        self.unanswered: list[dict[str, Any]] = []
        self.paged_alerts: set[Any] = set()
        self.duplicates = 0
        self.resolve_retries = 0  # resolves answered "locked, try again" (409), tried again
        self._collector = threading.Thread(target=self._collect, daemon=True)
        self._collector.start()

    def _resolve_in_turn(self) -> None:
        """Hand each page's alert to the resolvers when its time has come (in arrival order:
        each is due `resolve_after_s` after its page)."""
        while (item := self._to_resolve.get()) is not None:
            due, alert_id, pump = item
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self._resolver.submit(self._resolve, alert_id, pump)

    def _resolve(self, alert_id: str, pump: PumpState) -> None:
        """Resolve the alert, so that its pump's next reading pages again. A 409 that is not
        "already resolved" (the alert's row locked past the API's lock timeout: "try again")
        is tried again after its Retry-After, as a nurse would; freed without it, the pump's
        next reading would repeat the open alert and page no one (counted as a page missing)."""
        for _ in range(30):
            r = self.alr.post(f"/v1/alerts/{alert_id}/resolve", json={"resolution": "benchmark"})
            locked = r.status_code == 409 and r.json().get("current_status") != "resolved"
            if not locked:
                break
            with self._lock:
                self.resolve_retries += 1
            time.sleep(float(r.headers.get("retry-after", "1")))
        if r.status_code not in (200, 409) or locked:
            print(f"resolve failed: {r.status_code} {r.text[:200]}", file=sys.stderr)
        pump.free.set()

    def _collect(self) -> None:
        while not self._stop.is_set() or not self.receiver.arrivals.empty():
            try:
                arrived, body = self.receiver.arrivals.get(timeout=0.1)
            except queue.Empty:
                continue
            # a page message carries one alert, or (a storm's) several: each arrived with it
            for alert in body.get("alerts") or [body.get("alert", {})]:
                self._arrived(alert, arrived)

    def _arrived(self, alert: dict[str, Any], arrived: float) -> None:
        """A page of `alert` arrived at `arrived` (perf_counter): time it, resolve the alert."""
        pump = self.by_serial.get(alert.get("pump_serial", ""))
        if alert.get("kind") != "flow_abnormal" or pump is None:
            return
        with self._lock:
            if alert.get("id") in self.paged_alerts:
                # the same alert's page again (a send retried after its answer came too late:
                # at least once): counted, never timed as the pump's next reading's page
                self.duplicates += 1
                return
            self.paged_alerts.add(alert.get("id"))
        while pump.t_201 is None:  # the page beat the 201 to us: wait for the 201's stamp
            time.sleep(0.0005)
        with self._lock:
            latency_ms = (arrived - pump.t_201) * 1000
            self.latencies_ms[pump.phase].append(latency_ms)
            if latency_ms < 0:
                self.early += 1
            raised = datetime.fromisoformat(str(alert["first_raised_at"]).replace("Z", "+00:00"))
            self.to_alert_ms[pump.phase].append((raised.timestamp() - (pump.wall_201 or 0)) * 1000)
            arrived_wall = (pump.wall_201 or 0) + (arrived - pump.t_201)
            self.raised_to_page_ms[pump.phase].append((arrived_wall - raised.timestamp()) * 1000)
            self.timed[pump.phase].append((pump.wall_201 or 0, latency_ms))
        pump.t_201 = None
        if self.resolve_after_s is None:  # the pump reads no more: its alert stays open
            pump.free.set()
        else:
            self._to_resolve.put((arrived + self.resolve_after_s, alert["id"], pump))

    def _post(self, pump: PumpState) -> None:
        pump.readings += 1
        performed_at = pump.base + timedelta(days=pump.readings)
        fill_ml = pump.reservoir_ml
        residual_ml = fill_ml - pump.labeled_flow_ml_per_day * self.flow_factor * 1.0
        r = self.sch.post("/v1/refills", json={
            "pump_serial": pump.serial, "performed_at": performed_at.isoformat(),
            "residual_volume_ml": round(residual_ml, 3), "fill_volume_ml": fill_ml,
            "fill_type": "saline"})
        t_201 = time.perf_counter()
        if r.status_code != 201:
            print(f"refill failed: {r.status_code} {r.text[:300]}", file=sys.stderr)
            with self._lock:
                self.posted[pump.phase] -= 1
            pump.free.set()
            return
        pump.wall_201 = time.time() - (time.perf_counter() - t_201)
        pump.t_201 = t_201

    def drive(self, readings: int, rate: float, phase: str | Callable[[], str] = "quiet") -> None:
        """Post `readings` readings at `rate` per second, each counted in `phase` (or in what
        `phase()` says when it is posted); a reading whose pump still waits for its page is
        skipped and counted."""
        started = time.perf_counter()
        for k in range(readings):
            target = started + k / rate
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            now_phase = phase() if callable(phase) else phase
            pump = self._free_pump()
            if pump is None:
                self.skipped[now_phase] += 1
                continue
            pump.free.clear()
            pump.phase = now_phase
            with self._lock:
                self.posted[now_phase] += 1
            self._posters.submit(self._post, pump)
        self.sending_s += time.perf_counter() - started

    def _free_pump(self) -> PumpState | None:
        """The next pump round the list whose page is in and which has days left."""
        n = len(self.pumps)
        for j in range(n):
            pump = self.pumps[(self._next + j) % n]
            if pump.free.is_set() and pump.readings < self.readings_per_pump:
                self._next = (self._next + j + 1) % n
                return pump
        return None

    def finish(self, timeout_s: float = 15.0) -> None:
        """Wait for the pages still out (at most `timeout_s`), then stop collecting."""
        self._posters.shutdown(wait=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(not p.free.is_set() for p in self.pumps):
            time.sleep(0.05)
        self._stop.set()
        self._collector.join(5)
        self._to_resolve.put(None)
        self._resolving.join(5)
        self._resolver.shutdown(wait=True)
        for client in (self.inv, self.sch, self.alr):
            client.close()
        # a reading still waiting: its page did not come, or its alert's resolve did not return
        self.unanswered = [{"pump_serial": p.serial, "reading": p.readings, "phase": p.phase,
                            "page_arrived": p.t_201 is None,
                            "answered_201_at": (datetime.fromtimestamp(p.wall_201, UTC).isoformat()
                                                if p.wall_201 else None)}
                           for p in self.pumps if not p.free.is_set()]

    def diagnose(self, alerts_db_url: str) -> list[dict[str, Any]]:
        """For each unanswered reading: its pump's alerts as the alerts database has them, with
        their pages and timelines (read before the databases are dropped)."""
        out: list[dict[str, Any]] = []
        if not self.unanswered:
            return out
        url = alerts_db_url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(url, autocommit=True) as conn:
            for item in self.unanswered:
                alerts = conn.execute(
                    "SELECT id, status, severity, occurrences, first_raised_at::text, "
                    "last_raised_at::text, resolved_by FROM alerts WHERE pump_serial = %s "
                    "ORDER BY first_raised_at DESC LIMIT 2", (item["pump_serial"],)).fetchall()
                for alert in alerts:
                    pages = conn.execute(
                        "SELECT status, attempts, sent_at::text, message_id FROM notifications "
                        "WHERE alert_id = %s", (alert[0],)).fetchall()
                    actions = [r[0] for r in conn.execute(
                        "SELECT action FROM alert_events WHERE alert_id = %s ORDER BY id",
                        (alert[0],))]
                    out.append({**item, "alert": [str(v) for v in alert], "pages": [
                        [str(v) for v in page] for page in pages], "timeline": actions})
        print(f"unanswered readings: {json.dumps(out, indent=1)}", file=sys.stderr)
        return out

    def figures(self, phase: str) -> dict[str, Any]:
        """p50/p99/max of one phase's pages, and how many are missing."""
        latencies, posted = self.latencies_ms[phase], self.posted[phase]
        out: dict[str, Any] = {"posted": posted, "skipped_no_free_pump": self.skipped[phase],
                               "pages": len(latencies), "missing": posted - len(latencies)}
        if latencies:
            to_alert = self.to_alert_ms[phase]
            out.update({"p50_ms": round(pct(latencies, 0.5), 1), "p99_ms": round(pct(latencies, 0.99), 1),
                        "max_ms": round(max(latencies), 1),
                        "to_alert_raised_p50_ms": round(pct(to_alert, 0.5), 1),
                        "to_alert_raised_p99_ms": round(pct(to_alert, 0.99), 1)})
            alerts_side = self.raised_to_page_ms[phase]
            out.update({"raised_to_page_p50_ms": round(pct(alerts_side, 0.5), 1),
                        "raised_to_page_p99_ms": round(pct(alerts_side, 0.99), 1),
                        "raised_to_page_max_ms": round(max(alerts_side), 1)})
        return out


def run(readings: int = 1000, rate: float = 20.0, pumps: int = 150,
        flow_factor: float = 1.5, procfile: bool = True) -> dict[str, Any]:
    """Run the benchmark; returns the figures (p50/p99/max in ms) and a table for RESULTS.md.
    `procfile`: the services as deploy/Procfile runs them, else each one `hai serve` process."""
    with system("page", procfile=procfile) as sys_:
        load = FlowLoad(sys_, pumps=pumps, readings=readings, flow_factor=flow_factor)
        meter = sys_.cpu_meter()
        meter.phase("quiet")
        load.drive(readings, rate)
        load.finish()
        meter.stop()
        cpu = meter.figures().get("quiet", {})
        return {**_figures(load, readings=readings, rate=rate), "processes": _processes(procfile),
                # CPU seconds by process while the readings went, and per reading (bench._cpu)
                "cpu": cpu, "cpu_ms_per_reading": per_unit_ms(cpu.get("by_process_cpu_s", {}),
                                                              load.posted["quiet"])}
    raise AssertionError("unreachable")


def _processes(procfile: bool) -> str:
    """How the services ran, for the figures."""
    return ("as deploy/Procfile: each API --no-worker, workers: " + ", ".join(PROCFILE_WORKERS)
            if procfile else "each service one hai serve process (API and worker)")


def pct(values: list[float], q: float) -> float:
    """The q-quantile of `values` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _figures(load: FlowLoad, *, readings: int, rate: float) -> dict[str, Any]:
    quiet = load.figures("quiet")
    if not quiet["pages"]:
        return {"readings": readings, "pages": 0, "missing": quiet["posted"], "table": []}
    p50, p99, worst = quiet["p50_ms"], quiet["p99_ms"], quiet["max_ms"]
    return {
        "readings": readings, "posted": quiet["posted"],
        "skipped_no_free_pump": quiet["skipped_no_free_pump"], "pumps": len(load.pumps),
        "rate_per_s": rate, "achieved_rate_per_s": round(quiet["posted"] / load.sending_s, 1),
        "pages": quiet["pages"], "missing": quiet["missing"], "page_before_201": load.early,
        "duplicate_pages": load.duplicates, "resolve_retries": load.resolve_retries,
        "p50_ms": p50, "p99_ms": p99, "max_ms": worst,
        "to_alert_raised_p50_ms": quiet["to_alert_raised_p50_ms"],
        "to_alert_raised_p99_ms": quiet["to_alert_raised_p99_ms"],
        "table": [
            {"measure": "time to page p50", "ours": f"{p50:.0f} ms", "baseline": "-", "ratio": "-",
             "aim": "-", "met": "-"},
            {"measure": "time to page p99", "ours": f"{p99:.0f} ms", "baseline": "-", "ratio": "-",
             "aim": f"< {AIM_P99_MS:.0f} ms", "met": "yes" if p99 < AIM_P99_MS else "no"},
            {"measure": "time to page max", "ours": f"{worst:.0f} ms", "baseline": "-", "ratio": "-",
             "aim": "-", "met": "-"},
            {"measure": "pages missing", "ours": str(quiet["missing"]), "baseline": "-",
             "ratio": "-", "aim": "0", "met": "yes" if not quiet["missing"] else "no"},
        ],
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: run and print p50/p99/max."""
    parser = argparse.ArgumentParser(prog="python -m bench.time_to_page")
    parser.add_argument("--readings", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="readings per second")
    parser.add_argument("--pumps", type=int, default=150)
    parser.add_argument("--one-process", action="store_true",
                        help="each service one `hai serve` process (API and worker together), "
                             "not deploy/Procfile's APIs and workers")
    args = parser.parse_args(argv)
    figures = run(readings=args.readings, rate=args.rate, pumps=args.pumps,
                  procfile=not args.one_process)
    print(json.dumps({k: v for k, v in figures.items() if k != "table"}, indent=2))
    if figures.get("pages"):
        print(f"time to page: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, "
              f"max {figures['max_ms']} ms over {figures['pages']} pages "
              f"({figures['missing']} missing)")
    return 0 if figures.get("pages") and not figures.get("missing") else 1


if __name__ == "__main__":
    sys.exit(main())
