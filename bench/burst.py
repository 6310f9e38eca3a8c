"""Time to page under a burst: abnormal flow readings at 20/s, timed from the refill's 201 to the
webhook page, first on a quiet system, then while a scheduling sweep announces the facts of
1 % of 100,000 active therapies at once and a recall names 1,000 implanted pumps.

Inventory, scheduling and alerts run as deploy/Procfile runs them (each API alone, its work in
worker processes: bench/time_to_page.py's PROCFILE_WORKERS; `--one-process`: each service one
`hai serve`) on their own databases and vhost. Scheduling's database is filled by COPY before it starts
(bench/sweep.py's load), with every appointment 20 days later than it will be, so that nothing
is due yet; inventory gets the recalled pumps by COPY. The burst is one UPDATE that brings the
due 1 % back to now (the next sweep announces them: due soon, overdue, near empty, pharmacy
orders, late deliveries) and one `POST /v1/recalls`. The burst's alerts page a `default` on-call
whose webhook is a small HTTP server in a process of its own. The storm limit is as deployed
(HAI_PAGE_RATE_PER_MINUTE 20): the burst's pages go grouped, the abnormal flows' (critical) past
it. Each reading is of a pump of its own (as many patients' pumps as readings, registered and
filled through the APIs first), so no alert is resolved while the readings go; `--pumps N`
has N pumps go round instead, each page's alert resolved a second after it came (a nurse's
20 resolves a second, on top). bench._cpu reads where the machine's CPU went, in the quiet
phase (and per reading) and during the burst, and how fast the machine was (a fixed loop's
time, before and after: a shared host's speed moves by a third from one minute to the next).
`--contend N` runs N busy loops of pure Python beside the system for the whole run, each in a
session (and so a scheduler autogroup) of its own, as a host whose other guests take N cores'
worth of its CPU would (not metered: they are the host's, not ours).

    .venv/bin/python -m bench.burst [--therapies 100000 --recall-pumps 1000 --rate 20]
        [--pumps N] [--one-process] [--contend N]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pika
import pika.exceptions
import psycopg

from bench import sweep
from bench._cpu import per_unit_ms, reference_loop_ms
from bench._infra import ok
from bench.time_to_page import RESOLVE_AFTER_S, FlowLoad, System, _processes, pct, system
from services.alerts.handlers import queue_specs
from tests.doubles import free_port

AIM_P99_MS = 100.0
AIM_RAISED_S = 30.0
SHIFT = timedelta(days=20)  # how far ahead the appointments are loaded: none due until the burst
SWEEP_INTERVAL_S = 5
LOT = "BURSTLOT"
EVENTS_QUEUE = queue_specs()[1]
EVENTS_ROUTING_KEYS = sorted({key for _, key in EVENTS_QUEUE.bindings})


def _pg(url: str) -> str:
    """A SQLAlchemy URL as psycopg takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _sink(port: int) -> None:
    """The burst's on-call webhook: answers 200 to every page (run in a process of its own)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def _seed_scheduling(dbs: dict[str, str], therapies: int) -> float:
    """Load the therapies, their appointments SHIFT ahead; returns the seconds it took."""
    started = time.perf_counter()
    url = dbs["scheduling"]
    sweep.load(url, url.rsplit("/", 1)[1], therapies, now=datetime.now(UTC) + SHIFT)
    return time.perf_counter() - started


def _seed_recalled_pumps(sys_: System, n: int) -> str:
    """n implanted pumps of one lot in inventory (those of the first n therapies); their model."""
    with sys_.client("inventory") as inv:
        model = ok(inv.get("/v1/pump-models"), "pump models")["items"][0]
    now = datetime.now(UTC)
    with psycopg.connect(_pg(sys_.dbs["inventory"])) as conn, conn.cursor() as cur:
        with cur.copy("COPY pumps (serial_number, model_code, lot_number, expiry_date, "
                      "reservoir_ml, labeled_flow_ml_per_day, status, patient_mrn, center, "
                      "implanted_at, created_at, updated_at) FROM STDIN") as cp:
            for i in range(n):
                cp.write_row((f"S{i}", model["code"], LOT, (now + timedelta(days=3650)).date(),
                              model["reservoir_ml"], model["nominal_flow_ml_per_day"], "implanted",
                              f"M{i}", f"C{i % 50}", now - timedelta(days=60), now, now))
    return str(model["code"])


class _Probe:
    """Reads the burst's progress: its alerts and pages so far, and what is still on its way to
    alerts. Light on the system it measures (it shares its CPU): its database connections and
    its broker connection are kept, the events announced are read as they come (the outbox rows
    since the last read), of the inbox only those still waiting are looked up, and those
    costlier reads (`backlog`) are made every five seconds, or each second once the cheap ones
    say the burst may be over (until 2026-12-03 23:18 UTC every second: sampled in the burst,
    ~50 ms of the alerts database's CPU a second, a quarter of what it spent on the burst)."""

    def __init__(self, sys_: System, since: datetime) -> None:
        self.sys, self.since = sys_, since
        self.conns = {service: psycopg.connect(_pg(sys_.dbs[service]), autocommit=True)
                      for service in ("alerts", "scheduling", "inventory")}
        self.amqp: pika.BlockingConnection | None = None
        self.announced: set[str] = set()
        self.handled: set[str] = set()
        self.announced_after = {"scheduling": 0, "inventory": 0}  # the outbox seq read up to

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()
        if self.amqp is not None and self.amqp.is_open:
            self.amqp.close()

    def _queue_ready(self) -> int:
        if self.amqp is None or not self.amqp.is_open:
            self.amqp = pika.BlockingConnection(pika.URLParameters(self.sys.amqp_url))
        try:
            return int(self.amqp.channel().queue_declare(
                EVENTS_QUEUE.name, passive=True).method.message_count)
        except pika.exceptions.ChannelClosedByBroker:
            return 0

    def state(self) -> dict[str, Any]:
        """What is cheap to read every second: the burst's alerts so far, the outboxes' rows
        not yet published, the events announced, the alerts queue's ready count."""
        conn = self.conns["alerts"]
        alerts, last_raised = conn.execute(
            "SELECT count(*), max(first_raised_at) FROM alerts WHERE center LIKE 'C%%' "
            "AND first_raised_at >= %s", (self.since,)).fetchone() or (0, None)
        outboxes = _unpublished(conn)
        for service in ("scheduling", "inventory"):
            other = self.conns[service]
            outboxes += _unpublished(other)
            rows = other.execute(
                "SELECT seq, event_id FROM outbox WHERE seq > %s AND created_at >= %s "
                "AND routing_key = ANY(%s) ORDER BY seq",
                (self.announced_after[service], self.since, EVENTS_ROUTING_KEYS)).fetchall()
            self.announced.update(row[1] for row in rows)
            if rows:
                self.announced_after[service] = rows[-1][0]
        return {"alerts": alerts, "last_raised": last_raised, "outbox_unpublished": outboxes,
                "alerts_queue_ready": self._queue_ready(),
                "events_announced": len(self.announced)}

    def backlog(self) -> dict[str, Any]:
        """What costs the database more (its CPU is the page path's, at the same priority: each
        second during the burst these two took ~50 ms of it): the burst's pages sent and not
        yet, and the events announced not yet committed by alerts' consumers (a consumer holds
        some in a batch not yet done, which the queue's ready count misses)."""
        conn = self.conns["alerts"]
        sent, unsent, last_sent = conn.execute(
            "SELECT count(*) FILTER (WHERE n.status = 'sent'), "
            "count(*) FILTER (WHERE n.status IN ('pending', 'retrying', 'sending')), "
            "max(n.sent_at) FROM notifications n JOIN alerts a ON a.id = n.alert_id "
            "WHERE a.center LIKE 'C%%' AND a.first_raised_at >= %s",
            (self.since,)).fetchone() or (0, 0, None)
        # of the events announced and not yet seen handled, those handled now
        waiting = sorted(self.announced - self.handled)
        self.handled.update(row[0] for row in conn.execute(
            "SELECT event_id FROM inbox WHERE consumer = %s AND event_id = ANY(%s)",
            (EVENTS_QUEUE.name, waiting)).fetchall())
        return {"pages_sent": sent, "pages_unsent": unsent, "last_sent": last_sent,
                "events_unhandled": len(self.announced - self.handled)}

    def flow_pages_by_lane(self) -> dict[str, int]:
        """The abnormal flows' pages by the pager's lane that sent them (the timeline's `paged`):
        read once, at the end."""
        urgent, flow_paged = self.conns["alerts"].execute(
            "SELECT count(*) FILTER (WHERE e.details->>'lane' = 'urgent'), count(*) "
            "FROM alert_events e JOIN alerts a ON a.id = e.alert_id WHERE e.action = 'paged' "
            "AND a.kind = 'flow_abnormal' AND e.at >= %s", (self.since,)).fetchone() or (0, 0)
        return {"urgent": urgent, "bulk": flow_paged - urgent}


def _unpublished(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()
    return int(row[0]) if row else 0


class BurstWatch:
    """Polls the burst's progress until its alerts stop coming and their pages are all out."""

    def __init__(self, sys_: System, since: datetime, *, timeout_s: float,
                 on_done: Callable[[], None] = lambda: None) -> None:
        self.sys, self.since, self.timeout_s = sys_, since, timeout_s
        self.on_done = on_done
        self.done = threading.Event()
        self.state: dict[str, Any] = {}
        self.lanes: dict[str, int] = {}
        self.timed_out = False
        # every few seconds after the trigger: alerts raised, events announced and not yet
        # handled by alerts, rows not yet published by the outboxes, pages not yet sent
        self.progress: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def phase(self) -> str:
        return "after" if self.done.is_set() else "burst"

    def _watch(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        earliest = time.monotonic() + SWEEP_INTERVAL_S + 2  # the sweep has surely run by then
        stable_since, last_count = time.monotonic(), -1
        probe = _Probe(self.sys, self.since)
        try:
            while time.monotonic() < deadline:
                time.sleep(1.0)
                elapsed = time.monotonic() - (deadline - self.timeout_s)
                progress_due = not self.progress or elapsed - self.progress[-1]["s"] >= 5
                try:
                    state = {**self.state, **probe.state()}
                    # the costlier reads every five seconds, and each second once the cheap
                    # ones say the burst may be over (the end is said by those reads only)
                    drained = (not state["outbox_unpublished"] and not state["alerts_queue_ready"]
                               and state["alerts"] > 0)
                    fresh = progress_due or drained
                    if fresh:
                        state.update(probe.backlog())
                except (psycopg.Error, pika.exceptions.AMQPError) as exc:
                    print(f"burst watch: {exc}", file=sys.stderr)
                    continue
                self.state = state
                if progress_due:
                    self.progress.append({"s": round(elapsed, 1), "alerts": state["alerts"],
                                          "events_announced": state["events_announced"],
                                          "events_unhandled": state["events_unhandled"],
                                          "outbox_unpublished": state["outbox_unpublished"],
                                          "pages_unsent": state["pages_unsent"]})
                if state["alerts"] != last_count:
                    stable_since, last_count = time.monotonic(), state["alerts"]
                quiet = (fresh and drained and not state["events_unhandled"]
                         and not state["pages_unsent"])
                if (quiet and time.monotonic() >= earliest
                        and time.monotonic() - stable_since >= 3):
                    break
            else:
                self.timed_out = True
            self.lanes = probe.flow_pages_by_lane()
        finally:
            probe.close()
            self.on_done()
            self.done.set()

    def join(self) -> None:
        self._thread.join()


def run(therapies: int = 100_000, recall_pumps: int = 1000, rate: float = 20.0, pumps: int | None = None,
        quiet_s: float = 20.0, burst_s: float = 40.0, timeout_s: float = 240.0,
        procfile: bool = True, contend: int = 0) -> dict[str, Any]:
    """Quiet phase, then the burst; returns the figures and a table for RESULTS.md.
    `procfile`: the services as deploy/Procfile runs them (each API alone, its work in workers:
    bench.time_to_page.PROCFILE_WORKERS), else each one `hai serve` process. `contend`: busy
    loops beside the system for the whole run (`CONTEND`)."""
    seed_s: dict[str, float] = {}
    load_average = {"before": round(os.getloadavg()[0], 1)}
    # the machine's speed (bench._cpu.reference_loop_ms) before the run and after it
    speed = {"before": reference_loop_ms()}
    sink_port = free_port()
    sink = subprocess.Popen([sys.executable, "-c", f"from bench.burst import _sink; _sink({sink_port})"])
    contention = (subprocess.Popen([sys.executable, "-c", CONTEND, str(contend)]) if contend
                  else None)
    try:
        with system("burst", env={"HAI_SWEEP_INTERVAL_SECONDS": str(SWEEP_INTERVAL_S)},
                    before_start=lambda dbs: seed_s.update(
                        scheduling=_seed_scheduling(dbs, therapies)),
                    procfile=procfile) as sys_:
            started = time.perf_counter()
            model_code = _seed_recalled_pumps(sys_, recall_pumps)
            seed_s["inventory"] = time.perf_counter() - started
            with sys_.client("alerts") as alr:
                ok(alr.put("/v1/oncall/default", json={"escalation_delay_seconds": 3600, "levels": [{
                    "members": [{"name": "burst", "channel": "webhook",
                                 "address": f"http://127.0.0.1:{sink_port}/page"}],
                    "rotation_start": "2026-01-01T00:00:00Z", "shift_hours": 24}]}), "default on-call")
                now = datetime.now(UTC)
                ok(alr.post("/v1/silences", json={  # a slow sweep under load is not the point here
                    "matchers": {"kind": "system_stale"}, "starts_at": now.isoformat(),
                    "ends_at": (now + timedelta(days=1)).isoformat(), "reason": "benchmark"}),
                   "silence")
            readings = int((quiet_s + burst_s) * rate) + 10
            # as many patients' pumps as readings, each read once (no alert resolved), unless
            # `pumps`: those go round, each alert resolved a second after its page
            load = FlowLoad(sys_, pumps=pumps or readings, readings=readings,
                            resolve_after_s=RESOLVE_AFTER_S if pumps else None)
            meter = sys_.cpu_meter()
            meter.phase("quiet")
            load.drive(int(quiet_s * rate), rate, "quiet")
            meter.phase("burst")
            watch, trigger = _trigger(sys_, model_code, timeout_s,
                                      on_done=lambda: meter.phase("after"))
            load.drive(int(burst_s * rate), rate, watch.phase)
            if not watch.done.is_set():  # the burst goes on without the readings
                meter.phase("burst, readings over")
            load_average["burst"] = round(os.getloadavg()[0], 1)
            watch.join()
            next_profile_phase(sys_)
            load.finish(timeout_s=60)
            unanswered = load.diagnose(sys_.dbs["alerts"])
            meter.stop()
            speed["after"] = reference_loop_ms()
            figures = _figures(load, watch, trigger, therapies=therapies,
                               recall_pumps=recall_pumps, rate=rate, seed_s=seed_s,
                               load_average=load_average, procfile=procfile, cpu=meter.figures(),
                               speed=speed)
            if contend:
                figures["table"].insert(0, {
                    "measure": "busy loops beside the system (`--contend`: another guest's load, "
                               "not metered)", "ours": str(contend), "baseline": "-",
                    "ratio": "-", "aim": "-", "met": "-"})
            return {**figures, "unanswered_readings": unanswered, "contending_loops": contend}
    finally:
        sink.terminate()
        sink.wait(10)
        if contention is not None:
            contention.terminate()
            contention.wait(10)
    raise AssertionError("unreachable")


# `--contend N`: a process (the benchmark's child, asleep) starts N busy loops, each in a session
# of its own, and kills them when it is told to end; a loop whose starter is gone (the benchmark
# killed) ends by itself. Grandchildren of the benchmark: bench._cpu does not count them.
CONTEND = """
import os, signal, subprocess, sys
LOOP = "import os\\nppid = os.getppid()\\nwhile os.getppid() == ppid:\\n    sum(range(100000))"
loops = [subprocess.Popen([sys.executable, "-c", LOOP], start_new_session=True)
         for _ in range(int(sys.argv[1]))]
def end(*_):
    for loop in loops:
        loop.kill()
    sys.exit(0)
signal.signal(signal.SIGTERM, end)
while True:
    signal.pause()
"""


def next_profile_phase(sys_: System) -> None:
    """Tell the profiled services (HAI_BENCH_PROFILE) that a phase of the run ends."""
    for service in os.environ.get("HAI_BENCH_PROFILE", "").split(","):
        if service in sys_.procs:
            sys_.procs[service].send_signal(signal.SIGUSR1)


def _trigger(sys_: System, model_code: str, timeout: float, *,
             on_done: Callable[[], None] = lambda: None) -> tuple[BurstWatch, datetime]:
    """Bring the due 1 % back to now (the next sweep announces them) and issue the recall."""
    next_profile_phase(sys_)
    trigger = datetime.now(UTC)
    with psycopg.connect(_pg(sys_.dbs["scheduling"])) as conn:
        conn.execute("UPDATE appointments SET due_at = due_at - %s, "
                     "projected_empty_at = projected_empty_at - %s "
                     "WHERE due_at < %s AND pump_serial LIKE 'S%%'",
                     (SHIFT, SHIFT, trigger + SHIFT + timedelta(days=2)))
    watch = BurstWatch(sys_, trigger - timedelta(seconds=1), timeout_s=timeout, on_done=on_done)
    with sys_.client("inventory") as inv:
        ok(inv.post("/v1/recalls", json={"model_code": model_code, "lot_numbers": [LOT],
                                         "reason": "burst benchmark"}), "recall")
    return watch, trigger


def _seconds_after(at: datetime | None, trigger: datetime) -> float | None:
    return round((at - trigger).total_seconds(), 1) if at is not None else None


def _beside_quiet(measure: str, ours: float | None, base: float | None,
                  aim: float | None) -> dict[str, str]:
    """A row of the table: a burst figure beside the quiet one of the same run."""
    return {"measure": measure, "ours": f"{ours:.0f} ms" if ours is not None else "-",
            "baseline": f"{base:.0f} ms (quiet)" if base is not None else "-",
            "ratio": f"{ours / base:.1f}×" if ours is not None and base else "-",
            "aim": f"< {aim:.0f} ms" if aim else "-",
            "met": ("yes" if ours is not None and ours < aim else "no") if aim else "-"}


def _figures(load: FlowLoad, watch: BurstWatch, trigger: datetime, *, therapies: int,
             recall_pumps: int, rate: float, seed_s: dict[str, float],
             load_average: dict[str, float], procfile: bool, speed: dict[str, float],
             cpu: dict[str, Any] | None = None) -> dict[str, Any]:
    quiet, burst, after = (load.figures(p) for p in ("quiet", "burst", "after"))
    state = watch.state
    raised_s = _seconds_after(state.get("last_raised"), trigger)
    sent_s = _seconds_after(state.get("last_sent"), trigger)
    missing = quiet["missing"] + burst["missing"] + after["missing"]
    figures: dict[str, Any] = {
        "therapies": therapies, "due": therapies // sweep.DUE_EVERY, "recall_pumps": recall_pumps,
        "rate_per_s": rate, "pumps": len(load.pumps),
        "processes": _processes(procfile),
        "seed_s": {k: round(v, 1) for k, v in seed_s.items()},
        "quiet": quiet, "burst": burst, "after": after, "pages_missing": missing,
        "page_before_201": load.early, "duplicate_pages": load.duplicates,
        "resolve_retries": load.resolve_retries,
        "burst_alerts": state.get("alerts"), "burst_alerts_all_raised_s": raised_s,
        "burst_pages_sent": state.get("pages_sent"), "burst_pages_all_sent_s": sent_s,
        # abnormal flows' pages since the trigger, by the lane that sent them
        "burst_flow_pages_by_lane": watch.lanes,
        "burst_watch_timed_out": watch.timed_out, "burst_progress": watch.progress,
        # the burst's pages by 5 s after the trigger (of their 201): where the slow ones came
        "burst_by_5s": _by_window(load.timed["burst"], trigger.timestamp(), 5.0),
        # the machine's 1-minute load average (2 cores, shared): before the run, end of the burst
        "load_average": load_average,
        # ms of one fixed loop of pure Python, before and after the run: the machine's speed
        "reference_loop_ms": speed,
        # CPU seconds by process in each phase (bench._cpu), and the quiet phase's per reading
        "cpu": cpu or {},
    }
    quiet_cpu = (cpu or {}).get("quiet")
    if quiet_cpu and quiet["posted"]:
        figures["cpu_ms_per_quiet_reading"] = per_unit_ms(quiet_cpu["by_process_cpu_s"],
                                                          quiet["posted"])
    rows = [_beside_quiet(f"time to page {label} during the burst ({burst['pages']} pages)",
                          burst.get(key), quiet.get(key), aim)
            for label, key, aim in (("p50", "p50_ms", None), ("p99", "p99_ms", AIM_P99_MS),
                                    ("max", "max_ms", None))]
    rows += [_beside_quiet(f"alerts side alone (flow alert raised → page arrived) {label} "
                           "during the burst", burst.get(key), quiet.get(key), None)
             for label, key in (("p50", "raised_to_page_p50_ms"), ("p99", "raised_to_page_p99_ms"))]
    rows.append({"measure": "pages missing (quiet, burst and after)", "ours": str(missing),
                 "baseline": "-", "ratio": "-", "aim": "0", "met": "yes" if not missing else "no"})
    rows.append({"measure": f"burst's own alerts all raised ({state.get('alerts')} alerts of "
                            f"{therapies:,} therapies, 1 % due, and a recall of {recall_pumps:,})",
                 "ours": f"{raised_s} s after the trigger" if raised_s is not None else "-",
                 "baseline": "-", "ratio": "-", "aim": f"< {AIM_RAISED_S:.0f} s",
                 "met": "yes" if raised_s is not None and raised_s < AIM_RAISED_S
                 and not watch.timed_out else "no"})
    late = f" (not all by {watch.timeout_s:.0f} s: the watch timed out)" if watch.timed_out else ""
    rows.append({"measure": f"burst's own pages all sent ({state.get('pages_sent')} pages to one "
                            "recipient, grouped as the storm limit has them: 20 messages a minute)",
                 "ours": f"{sent_s} s{late}" if sent_s is not None else "-", "baseline": "-",
                 "ratio": "-", "aim": "-", "met": "-"})
    rows += _cpu_rows(cpu or {}, figures.get("cpu_ms_per_quiet_reading", {}), rate=rate)
    rows += _wait_rows(cpu or {}, {"quiet": quiet["posted"], "burst": burst["posted"]})
    rows.append({"measure": "the machine's speed: one fixed loop of pure Python (bench._cpu's "
                            "reference_loop_ms; larger: slower), before the run / after it",
                 "ours": f"{speed['before']:.0f} / {speed['after']:.0f} ms", "baseline": "-",
                 "ratio": "-", "aim": "-", "met": "-"})
    figures["table"] = rows
    return figures


def _by_window(timed: list[tuple[float, float]], start: float,
               width_s: float) -> list[dict[str, float]]:
    """Pages by window of `width_s` after `start` (their 201): count, p50, p99 and max in ms."""
    windows: dict[int, list[float]] = {}
    for at, latency_ms in timed:
        windows.setdefault(int((at - start) // width_s), []).append(latency_ms)
    return [{"from_s": k * width_s, "pages": len(v), "p50_ms": round(pct(v, 0.5), 1),
             "p99_ms": round(pct(v, 0.99), 1), "max_ms": round(max(v), 1)}
            for k, v in sorted(windows.items())]


def _cpu_rows(cpu: dict[str, Any], per_reading: dict[str, float], *, rate: float) -> list[dict[str, str]]:
    """The machine's CPU in the quiet phase and during the burst (bench._cpu's figures)."""
    cores = os.cpu_count() or 1
    rows = []
    for phase, what in (("quiet", f"abnormal flows alone, {rate:.0f}/s"),
                        ("burst", "the flows beside the burst, while the readings go"),
                        ("burst, readings over", "the burst alone, until its alerts and pages "
                                                 "are out")):
        figures = cpu.get(phase)
        if not figures or figures.get("cores") is None:
            continue
        top = ", ".join(f"{label} {seconds / figures['cpu_s']:.0%}" for label, seconds in
                        list(figures["by_process_cpu_s"].items())[:4]) if figures["cpu_s"] else ""
        extra = (f"; {per_reading['all']:.0f} ms CPU per reading" if phase == "quiet"
                 and per_reading.get("all") else "")
        rows.append({"measure": f"CPU used, {phase} phase ({what}; most: {top})",
                     "ours": f"{figures['cores']:.2f} cores{extra}",
                     "baseline": f"{cores} cores (the machine)", "ratio":
                     f"{figures['cores'] / cores:.0%}", "aim": "-", "met": "-"})
    return rows


# the processes an abnormal flow's page goes through (besides PostgreSQL and RabbitMQ): the
# scheduling API that records the reading, the relay that sends it, the worker that pages
PAGE_PATH = ("alerts_flow", "scheduling", "scheduling_relay")


def _wait_rows(cpu: dict[str, Any], readings: dict[str, int]) -> list[dict[str, str]]:
    """How long the page path's processes waited for a CPU, per reading, in the quiet phase and
    during the burst (the part of a page's time that is queueing for the machine, which
    priorities decide), beside what the host's other guests took meanwhile (steal: a noisy
    host's minutes, which no priority of ours decides)."""
    rows = []
    for phase in ("quiet", "burst"):
        figures, n = cpu.get(phase), readings.get(phase)
        if not figures or not n or not figures.get("by_process_waited_s"):
            continue
        waited = figures["by_process_waited_s"]
        per_reading = {name: waited.get(name, 0.0) * 1000 / n for name in PAGE_PATH}
        steal, wall = figures.get("steal_s"), figures.get("wall_s") or 0.0
        stolen = (f"; the host's other guests took {steal:.1f} s of the phase's "
                  f"{wall:.0f} s × {os.cpu_count() or 1} cores" if steal is not None else "")
        rows.append({"measure": f"waited for a CPU (runnable, not running), {phase} phase: the "
                                f"page path's processes, per reading ({', '.join(PAGE_PATH)})",
                     "ours": f"{sum(per_reading.values()):.0f} ms ("
                             + ", ".join(f"{v:.0f}" for v in per_reading.values()) + f"){stolen}",
                     "baseline": "-", "ratio": "-", "aim": "-", "met": "-"})
    return rows


def main(argv: list[str] | None = None) -> int:
    """Command line: run and print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.burst")
    parser.add_argument("--therapies", type=int, default=100_000)
    parser.add_argument("--recall-pumps", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="flow readings per second")
    parser.add_argument("--pumps", type=int, default=None,
                        help="this many pumps go round, each page's alert resolved a second "
                             "after it came (default: one pump per reading, none resolved)")
    parser.add_argument("--quiet-s", type=float, default=20.0)
    parser.add_argument("--burst-s", type=float, default=40.0)
    parser.add_argument("--timeout-s", type=float, default=240.0,
                        help="how long to wait for the burst's alerts and pages")
    parser.add_argument("--one-process", action="store_true",
                        help="each service one `hai serve` process (API and worker together), "
                             "not deploy/Procfile's APIs and workers")
    parser.add_argument("--contend", type=int, default=0, metavar="N",
                        help="N busy loops beside the system for the whole run, each in a "
                             "session of its own: a host whose other guests take N cores")
    args = parser.parse_args(argv)
    figures = run(therapies=args.therapies, recall_pumps=args.recall_pumps, rate=args.rate,
                  pumps=args.pumps, quiet_s=args.quiet_s, burst_s=args.burst_s,
                  timeout_s=args.timeout_s, procfile=not args.one_process, contend=args.contend)
    print(json.dumps({k: v for k, v in figures.items() if k != "table"}, indent=2, default=str))
    for row in figures["table"]:
        print(f"{row['measure']}: {row['ours']} (baseline {row['baseline']}; aim {row['aim']}: "
              f"{row['met']})")
    return 0 if not figures["pages_missing"] else 1


if __name__ == "__main__":
    sys.exit(main())
