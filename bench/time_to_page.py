"""Time to page: from the 201 of a refill whose flow is abnormal to the webhook page arriving.

Inventory, scheduling and alerts run as separate `hai serve` processes on their own PostgreSQL
databases and a fresh RabbitMQ vhost; this process is the nurse (posting refills), the on-call's
webhook receiver, and the on-call resolving each alert so that its pump can page again.

    .venv/bin/python -m bench.time_to_page [--readings 1000 --rate 20 --pumps 50]
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
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench._infra import database, ok, vhost, wait_ready
from bench._infra import stop as stop_process
from shared.auth import mint_token
from shared.settings import DEV_JWT_SECRET
from tests.doubles import WebhookReceiver, free_port

ROOT = Path(__file__).resolve().parent.parent
HAI = str(ROOT / ".venv" / "bin" / "hai")
CENTER = "bench-center"
AIM_P99_MS = 500.0
QUIET_KINDS = ("refill_due_soon", "refill_overdue", "reservoir_near_empty", "delivery_late",
               "delivery_rejected", "device_recalled_implanted", "system_stale")


@dataclass
class PumpState:
    """One bench pump: its next reading day and the reading waiting for its page."""

    serial: str
    labeled_flow_ml_per_day: float
    reservoir_ml: float
    base: datetime
    readings: int = 0
    free: threading.Event = field(default_factory=threading.Event)
    t_201: float | None = None
    wall_201: float | None = None


def _start(service: str, port: int, env: dict[str, str], logdir: Path) -> subprocess.Popen[bytes]:
    log = (logdir / f"{service}.log").open("wb")
    return subprocess.Popen([HAI, "serve", service, "--port", str(port)], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=str(logdir))


def _setup_pumps(inv: httpx.Client, sch: httpx.Client, n: int, days_back: int) -> list[PumpState]:
    """Register, implant, admit, start a therapy and make a first fill for each pump."""
    model = ok(inv.get("/v1/pump-models"), "pump models")["items"][0]
    now = datetime.now(UTC).replace(microsecond=0)
    base = now - timedelta(days=days_back)
    run = os.urandom(3).hex()
    pumps = []
    for i in range(n):
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
        pumps.append(state)
    return pumps


def run(readings: int = 1000, rate: float = 20.0, pumps: int = 50,
        flow_factor: float = 1.5) -> dict[str, Any]:
    """Run the benchmark; returns the figures (p50/p99/max in ms) and a table for RESULTS.md."""
    token = mint_token("bench", ["admin"], secret=os.environ.get("HAI_JWT_SECRET", DEV_JWT_SECRET))
    headers = {"Authorization": f"Bearer {token}"}
    with ExitStack() as stack:
        amqp = stack.enter_context(vhost("page"))
        dbs = {s: stack.enter_context(database(s[:3])) for s in ("inventory", "scheduling", "alerts")}
        ports = {s: free_port() for s in dbs}
        urls = {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}
        logdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hai-bench-page-")))
        receiver = WebhookReceiver()
        stack.callback(receiver.close)
        # every reading pages the one bench recipient: the storm limit (pages grouped past
        # HAI_PAGE_RATE_PER_MINUTE) is lifted, so that each page is one page and is measured
        env = {**os.environ, "HAI_AMQP_URL": amqp, "HAI_LOG_LEVEL": "WARNING",
               "HAI_PAGE_RATE_PER_MINUTE": "1000000",
               **{f"HAI_{s.upper()}_DATABASE_URL": u for s, u in dbs.items()},
               **{f"HAI_{s.upper()}_URL": u for s, u in urls.items()}}
        procs = {s: _start(s, ports[s], env, logdir) for s in dbs}
        for proc in procs.values():
            stack.callback(stop_process, proc)
        try:
            for s, proc in procs.items():
                wait_ready(urls[s], proc)
            return _measure(urls, headers, receiver, readings=readings, rate=rate, n_pumps=pumps,
                            flow_factor=flow_factor)
        except Exception:
            for s in procs:
                tail = (logdir / f"{s}.log").read_text(errors="replace")[-3000:]
                print(f"--- {s} log (tail) ---\n{tail}", file=sys.stderr)
            raise
    raise AssertionError("unreachable")


def _measure(urls: dict[str, str], headers: dict[str, str], receiver: WebhookReceiver, *, readings: int,
             rate: float, n_pumps: int, flow_factor: float) -> dict[str, Any]:
    inv = httpx.Client(base_url=urls["inventory"], headers=headers, timeout=30)
    sch = httpx.Client(base_url=urls["scheduling"], headers=headers, timeout=30)
    alr = httpx.Client(base_url=urls["alerts"], headers=headers, timeout=30)
    ok(alr.put(f"/v1/oncall/{CENTER}", json={"escalation_delay_seconds": 3600, "levels": [{
        "members": [{"name": "bench", "channel": "webhook", "address": receiver.url}],
        "rotation_start": "2026-01-01T00:00:00Z", "shift_hours": 24}]}), "on-call")
    now = datetime.now(UTC)
    for kind in QUIET_KINDS:  # only flow pages are measured; the past-dated refills make others
        ok(alr.post("/v1/silences", json={
            "matchers": {"kind": kind, "center": CENTER}, "starts_at": now.isoformat(),
            "ends_at": (now + timedelta(days=1)).isoformat(), "reason": "benchmark"}), "silence")
    pumps = _setup_pumps(inv, sch, n_pumps, days_back=readings + 3)
    by_serial = {p.serial: p for p in pumps}
    latencies_ms: list[float] = []
    early: list[float] = []
    to_alert_ms: list[float] = []  # 201 → the alert raised in alerts's consumer (wall clocks)
    lock = threading.Lock()
    stop = threading.Event()

    def resolve(alert_id: str, pump: PumpState) -> None:
        r = alr.post(f"/v1/alerts/{alert_id}/resolve", json={"resolution": "benchmark"})
        if r.status_code not in (200, 409):
            print(f"resolve failed: {r.status_code} {r.text[:200]}", file=sys.stderr)
        pump.free.set()

    resolver = ThreadPoolExecutor(8)

    def collect() -> None:
        while not stop.is_set() or not receiver.arrivals.empty():
            try:
                arrived, body = receiver.arrivals.get(timeout=0.1)
            except queue.Empty:
                continue
            alert = body.get("alert", {})
            pump = by_serial.get(alert.get("pump_serial", ""))
            if alert.get("kind") != "flow_abnormal" or pump is None:
                continue
            while pump.t_201 is None:  # the page beat the 201 to us: wait for the 201's stamp
                time.sleep(0.0005)
            with lock:
                latency_ms = (arrived - pump.t_201) * 1000
                latencies_ms.append(latency_ms)
                if latency_ms < 0:
                    early.append(latency_ms)
                raised = datetime.fromisoformat(str(alert["first_raised_at"]).replace("Z", "+00:00"))
                to_alert_ms.append((raised.timestamp() - (pump.wall_201 or 0)) * 1000)
            pump.t_201 = None
            resolver.submit(resolve, alert["id"], pump)

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()

    def post(pump: PumpState) -> None:
        pump.readings += 1
        performed_at = pump.base + timedelta(days=pump.readings)
        fill_ml = pump.reservoir_ml
        residual_ml = fill_ml - pump.labeled_flow_ml_per_day * flow_factor * 1.0
        r = sch.post("/v1/refills", json={
            "pump_serial": pump.serial, "performed_at": performed_at.isoformat(),
            "residual_volume_ml": round(residual_ml, 3), "fill_volume_ml": fill_ml,
            "fill_type": "saline"})
        t_201 = time.perf_counter()
        if r.status_code != 201:
            print(f"refill failed: {r.status_code} {r.text[:300]}", file=sys.stderr)
            pump.free.set()
            return
        pump.wall_201 = time.time() - (time.perf_counter() - t_201)
        pump.t_201 = t_201

    posters = ThreadPoolExecutor(16)
    started = time.perf_counter()
    skipped = 0
    for k in range(readings):
        target = started + k / rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        pump = next((p for p in pumps if p.free.is_set()), None)
        if pump is None:
            skipped += 1
            continue
        pump.free.clear()
        posters.submit(post, pump)
    posters.shutdown(wait=True)
    sending_s = time.perf_counter() - started
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(not p.free.is_set() for p in pumps):
        time.sleep(0.05)
    stop.set()
    collector.join(5)
    resolver.shutdown(wait=True)
    for client in (inv, sch, alr):
        client.close()
    return _figures(latencies_ms, readings=readings, rate=rate, skipped=skipped,
                    early=len(early), sending_s=sending_s, pumps=n_pumps, to_alert_ms=to_alert_ms)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _figures(latencies_ms: list[float], *, readings: int, rate: float, skipped: int, early: int,
             sending_s: float, pumps: int, to_alert_ms: list[float]) -> dict[str, Any]:
    posted = readings - skipped
    if not latencies_ms:
        return {"readings": readings, "pages": 0, "missing": posted, "table": []}
    p50, p99, worst = _pct(latencies_ms, 0.5), _pct(latencies_ms, 0.99), max(latencies_ms)
    return {
        "readings": readings, "posted": posted, "skipped_no_free_pump": skipped, "pumps": pumps,
        "rate_per_s": rate, "achieved_rate_per_s": round(posted / sending_s, 1),
        "pages": len(latencies_ms), "missing": posted - len(latencies_ms),
        "page_before_201": early,
        "p50_ms": round(p50, 1), "p99_ms": round(p99, 1), "max_ms": round(worst, 1),
        "to_alert_raised_p50_ms": round(_pct(to_alert_ms, 0.5), 1) if to_alert_ms else None,
        "to_alert_raised_p99_ms": round(_pct(to_alert_ms, 0.99), 1) if to_alert_ms else None,
        "table": [
            {"measure": "time to page p50", "ours": f"{p50:.0f} ms", "baseline": "-", "ratio": "-",
             "aim": "-", "met": "-"},
            {"measure": "time to page p99", "ours": f"{p99:.0f} ms", "baseline": "-", "ratio": "-",
             "aim": f"< {AIM_P99_MS:.0f} ms", "met": "yes" if p99 < AIM_P99_MS else "no"},
            {"measure": "time to page max", "ours": f"{worst:.0f} ms", "baseline": "-", "ratio": "-",
             "aim": "-", "met": "-"},
            {"measure": "pages missing", "ours": str(posted - len(latencies_ms)), "baseline": "-",
             "ratio": "-", "aim": "0", "met": "yes" if posted == len(latencies_ms) else "no"},
        ],
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: run and print p50/p99/max."""
    parser = argparse.ArgumentParser(prog="python -m bench.time_to_page")
    parser.add_argument("--readings", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="readings per second")
    parser.add_argument("--pumps", type=int, default=50)
    args = parser.parse_args(argv)
    figures = run(readings=args.readings, rate=args.rate, pumps=args.pumps)
    print(json.dumps({k: v for k, v in figures.items() if k != "table"}, indent=2))
    if figures.get("pages"):
        print(f"time to page: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, "
              f"max {figures['max_ms']} ms over {figures['pages']} pages "
              f"({figures['missing']} missing)")
    return 0 if figures.get("pages") and not figures.get("missing") else 1


if __name__ == "__main__":
    sys.exit(main())
