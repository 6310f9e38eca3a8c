"""API under load (the performance issue): throughput and latency with 32 connections, beside a
bare FastAPI + SQLAlchemy app running the same queries in the same run; memory of each service.

Inventory, scheduling and alerts run as deploy/Procfile runs them: each an API process
(`hai serve --no-worker`) and a worker process (`hai worker`: relay, consumers, jobs), on their
own PostgreSQL databases and a fresh RabbitMQ vhost. The system is seeded through the API
(pumps registered and implanted, patients, saline-maintenance therapies started 60 days ago and a
first fill 20 days ago); then `wrk` (a separate process, loopback, one connection per thread)
drives each endpoint for `duration_s` seconds after a short warm-up:
  - `GET /v1/pumps/{serial}` (inventory), rotating over the seeded serials;
  - the nurses' worklist `GET /v1/appointments?status=scheduled&center=…&due_before=…`;
  - `POST /v1/refills`: each wrk thread owns some pumps and refills them in turn, each fill an
    hour after the previous one, with the residual the labeled flow leaves: every answer must be
    a 201 (anything else is counted as an error).
The baseline (`bench/bare_app.py`, uvicorn, separate process) answers the same three requests on
the same databases (its refills on pumps of its own). Aim: within 1.5x of the baseline's p50 and
p99, no errors; each service's resident memory after the load under 150 MB.

    .venv/bin/python -m bench.api_load [--duration 30 --connections 32 --pumps 400 --profile]

`--profile` then drives each endpoint once more with py-spy attached to the service and reports
its hot spots (needs `pip install py-spy` in the venv).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench._infra import database, ok, stop, vhost, wait_ready
from shared.auth import mint_token
from shared.settings import DEV_JWT_SECRET
from tests.doubles import free_port

ROOT = Path(__file__).resolve().parent.parent
WRK_SCRIPTS = Path(__file__).resolve().parent / "wrk"
BIN = Path(sys.executable).parent
SERVICES = ("inventory", "scheduling", "alerts")
MODEL_CODE = "DEMO-INTERA-3000"
CENTERS = ("BENCH-NORTH", "BENCH-SOUTH", "BENCH-EAST", "BENCH-WEST")
LABELED_FLOW_ML_PER_DAY = 1.0
FILL_VOLUME_ML = 30.0
THERAPY_STARTED_DAYS_AGO = 60
FIRST_FILL_DAYS_AGO = 20
REFILL_INTERVAL_DAYS = 28  # next appointments fall 8-28 days ahead: no due-soon, overdue, near-empty
WORKLIST_HORIZON_DAYS = 30
REFILL_STEP_S = 3600
LATENCY_RATIO_AIM = 1.5
RSS_AIM_MB = 150.0
AIM = f"within {LATENCY_RATIO_AIM}x of bare on latency (p50 and p99), no errors"
WRK_TIMEOUT = "10s"
ENDPOINTS = (
    ("get_pump", "GET /v1/pumps/{serial}", "inventory"),
    ("worklist", "GET /v1/appointments (worklist)", "scheduling"),
    ("post_refill", "POST /v1/refills", "scheduling"),
)


def require_wrk() -> str:
    """The wrk binary, or a clear error saying how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk (the HTTP load generator) is not installed: "
                           "`apt-get install wrk` (Debian/Ubuntu), then run again")
    return path


# ---------------------------------------------------------------- memory

def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            found += [int(c) for c in text]
    except OSError:
        pass
    return found


def rss_mb(pid: int) -> float:
    """Resident memory (VmRSS) of a process and all its descendants, in MB."""
    total_kb, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
        todo += _children(p)
    return round(total_kb / 1024, 1)


# ---------------------------------------------------------------- seeding

def seed(urls: dict[str, str], headers: dict[str, str], pumps: int, workers: int = 16) -> list[str]:
    """Register, implant, admit, start a therapy and make a first fill for each pump, through the
    API and concurrently; returns the serials."""
    run_id = os.urandom(3).hex()
    now = datetime.now(UTC).replace(microsecond=0)
    started_on = (now - timedelta(days=THERAPY_STARTED_DAYS_AGO)).date()
    implanted_at = now - timedelta(days=THERAPY_STARTED_DAYS_AGO + 1)
    first_fill_at = now - timedelta(days=FIRST_FILL_DAYS_AGO)
    expiry = (now + timedelta(days=5 * 365)).date().isoformat()
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)

    def serial(i: int) -> str:
        return f"LD-{run_id}-{i:05d}"

    def mrn(i: int) -> str:
        return f"LDMRN-{run_id}-{i:05d}"

    with httpx.Client(base_url=urls["inventory"], headers=headers, timeout=60, limits=limits) as inv, \
            httpx.Client(base_url=urls["scheduling"], headers=headers, timeout=60, limits=limits) as sch, \
            ThreadPoolExecutor(workers) as pool:

        def admit(i: int) -> None:
            center = CENTERS[i % len(CENTERS)]
            ok(inv.post("/v1/pumps", json={
                "serial_number": serial(i), "model_code": MODEL_CODE, "lot_number": f"LDLOT-{i % 20}",
                "expiry_date": expiry, "labeled_flow_ml_per_day": LABELED_FLOW_ML_PER_DAY}),
                "register pump")
            ok(inv.post(f"/v1/pumps/{serial(i)}/implant", json={
                "patient_mrn": mrn(i), "implanted_at": implanted_at.isoformat(), "center": center}),
                "implant")
            ok(sch.post("/v1/patients", json={
                "mrn": mrn(i), "given_name": "Load", "family_name": f"Patient{i}",
                "birth_date": "1960-01-01", "weight_kg": 70, "center": center}), "patient")

        def start(i: int) -> None:
            therapy = {"patient_mrn": mrn(i), "pump_serial": serial(i),
                       "regimen": "saline_maintenance", "start_on": started_on.isoformat(),
                       "refill_interval_days": REFILL_INTERVAL_DAYS}
            deadline = time.monotonic() + 120
            while True:  # 409 until scheduling has learnt the implant from inventory's event
                r = sch.post("/v1/therapies", json=therapy)
                if r.status_code != 409 or time.monotonic() > deadline:
                    ok(r, "therapy")
                    break
                time.sleep(0.2)
            ok(sch.post("/v1/refills", json={
                "pump_serial": serial(i), "performed_at": first_fill_at.isoformat(),
                "residual_volume_ml": 0, "fill_volume_ml": FILL_VOLUME_ML, "fill_type": "saline"}),
                "first fill")

        list(pool.map(admit, range(pumps)))
        list(pool.map(start, range(pumps)))
    return [serial(i) for i in range(pumps)]


def write_refill_plan(scheduling_db_url: str, serials: Sequence[str], path: Path) -> None:
    """The refill script's input from the database: each pump's last fill and labeled flow."""
    import psycopg

    with psycopg.connect(scheduling_db_url.replace("postgresql+psycopg://", "postgresql://"),
                         autocommit=True) as conn:
        # requests still in flight when the last wrk run stopped must land first
        count, deadline = -1, time.monotonic() + 30
        while time.monotonic() < deadline:
            now_count = conn.execute("SELECT count(*) FROM refills").fetchone()
            if now_count is not None and now_count[0] == count:
                break
            count = now_count[0] if now_count is not None else -1
            time.sleep(1.0)
        rows = conn.execute(
            "SELECT DISTINCT ON (r.pump_serial) r.pump_serial, r.performed_at, r.fill_volume_ml, "
            "p.labeled_flow_ml_per_day FROM refills r "
            "JOIN implanted_pumps p ON p.serial_number = r.pump_serial "
            "WHERE r.pump_serial = ANY(%s) ORDER BY r.pump_serial, r.performed_at DESC",
            (list(serials),)).fetchall()
    if len(rows) != len(serials):
        raise RuntimeError(f"{len(serials) - len(rows)} pumps have no fill yet")
    path.write_text("".join(f"{s}\t{int(at.timestamp())}\t{fill}\t{flow}\tsaline\n"
                            for s, at, fill, flow in rows))


# ---------------------------------------------------------------- wrk

def run_wrk(url: str, script: str, args: Sequence[str], *, duration_s: int, connections: int,
            token: str) -> dict[str, Any]:
    """One wrk run (one connection per thread); its figures from the script's done()."""
    cmd = [require_wrk(), "-t", str(connections), "-c", str(connections), "-d", f"{duration_s}s",
           "--timeout", WRK_TIMEOUT, "-s", str(WRK_SCRIPTS / script),
           "-H", f"Authorization: Bearer {token}", url, "--", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 120, check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {(out.stderr or out.stdout)[-1000:]}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    seconds = raw["duration_us"] / 1e6
    socket_errors = sum(raw["socket_errors"].values())
    return {
        "rps": round(raw["requests"] / seconds, 1),
        "p50_ms": round(raw["latency_us"]["p50"] / 1000, 2),
        "p99_ms": round(raw["latency_us"]["p99"] / 1000, 2),
        "errors": raw["non_2xx"] + socket_errors,
        "requests": raw["requests"],
        "p90_ms": round(raw["latency_us"]["p90"] / 1000, 2),
        "max_ms": round(raw["latency_us"]["max"] / 1000, 2),
        "statuses": raw["statuses"],
        "socket_errors": raw["socket_errors"],
    }


def _ratio(ours: float, bare: float) -> float | None:
    return round(ours / bare, 2) if bare > 0 else None


# ---------------------------------------------------------------- profiling

def profile_hot_spots(pid: int, drive: Any, duration_s: int, out: Path, top: int = 25) -> dict[str, Any]:
    """Sample `pid` with py-spy while `drive()` loads it; the functions with the largest share of
    the busy samples, on their own (self) and with what they call (inclusive)."""
    spy = BIN / "py-spy"
    if not spy.exists():
        return {"skipped": "py-spy not installed (`.venv/bin/pip install py-spy`)"}
    proc = subprocess.Popen([str(spy), "record", "--pid", str(pid), "--duration", str(duration_s),
                             "--rate", "200", "--format", "raw", "--gil", "--nonblocking",
                             "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)
    drive()
    _, err = proc.communicate(timeout=duration_s + 60)
    if not out.exists():
        return {"skipped": f"py-spy failed: {err.decode(errors='replace')[-500:]}"}
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")]
        total += count
        self_counts[frames[-1]] += count
        for name in set(frames):
            incl_counts[name] += count
    if not total:
        return {"skipped": "no samples"}

    def share(counts: Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * n / total, 1)] for name, n in counts.most_common(top)]

    return {"samples": total, "self_pct": share(self_counts), "inclusive_pct": share(incl_counts),
            "raw": str(out)}


def _frame(frame: str) -> str:
    """`func (path/to/file.py:123)` → `path/to/file.py:func` (line numbers merged)."""
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", f"{ROOT}/", "/lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{file}:{name}"


# ---------------------------------------------------------------- the benchmark

def run(duration_s: int = 30, connections: int = 32, pumps: int = 400, warmup_s: int = 3,
        profile: bool = False, pause_workers: bool = False) -> dict[str, Any]:
    """Start the system and the baseline, seed, drive each endpoint; return the figures.

    `pause_workers`: each service's worker is paused (SIGSTOP) during the measured load, to
    isolate the request path from the event pipeline (relay, consumers) that shares the
    machine's cores; the events wait in the outbox."""
    require_wrk()
    if pumps < 2 * connections:
        raise ValueError("need at least two pumps per connection (half of them for the baseline)")
    token = mint_token("bench", ["admin"], secret=os.environ.get("HAI_JWT_SECRET", DEV_JWT_SECRET))
    headers = {"Authorization": f"Bearer {token}"}
    with ExitStack() as stack:
        amqp = stack.enter_context(vhost("api"))
        dbs = {s: stack.enter_context(database(s[:3])) for s in SERVICES}
        urls = {s: f"http://127.0.0.1:{free_port()}" for s in SERVICES}
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hai-bench-api-")))
        # the load refills each pump an hour after its previous fill: the clinical minimum
        # (24 h) would refuse them, so the services and the baseline allow that step
        min_interval = {"HAI_MIN_REFILL_INTERVAL_HOURS": str(REFILL_STEP_S / 3600)}
        env = {**os.environ, "HAI_AMQP_URL": amqp, "HAI_LOG_LEVEL": "WARNING", "HAI_ENV": "development",
               **min_interval,
               **{f"HAI_{s.upper()}_DATABASE_URL": u for s, u in dbs.items()},
               **{f"HAI_{s.upper()}_URL": u for s, u in urls.items()}}
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            workers: list[subprocess.Popen[bytes]] = []
            for s in SERVICES:
                log = (workdir / f"{s}.log").open("wb")
                # as deploy/Procfile runs them: the API without background work, and a worker
                serve = [str(BIN / "hai"), "serve", s, "--port", urls[s].rsplit(":", 1)[1],
                         "--no-worker"]
                procs[s] = subprocess.Popen(serve, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=str(workdir))
                stack.callback(stop, procs[s])
                workers.append(subprocess.Popen([str(BIN / "hai"), "worker", s], env=env,
                                                stdout=log, stderr=subprocess.STDOUT,
                                                cwd=str(workdir)))
                stack.callback(stop, workers[-1])
                if pause_workers:
                    stack.callback(os.kill, workers[-1].pid, signal.SIGCONT)
            for s in SERVICES:
                wait_ready(urls[s], procs[s])
            seed_started = time.monotonic()
            serials = seed(urls, headers, pumps)
            seed_s = round(time.monotonic() - seed_started, 1)

            bare_url = f"http://127.0.0.1:{free_port()}"
            bare_log = (workdir / "bare.log").open("wb")
            bare = subprocess.Popen(
                [sys.executable, "-m", "bench.bare_app", "--port", bare_url.rsplit(":", 1)[1],
                 "--inventory-db", dbs["inventory"], "--scheduling-db", dbs["scheduling"]],
                cwd=str(ROOT), stdout=bare_log, stderr=subprocess.STDOUT,
                env={**os.environ, **min_interval})
            stack.callback(stop, bare)
            wait_ready(bare_url, bare, path="/healthz")

            if pause_workers:
                for worker in workers:
                    os.kill(worker.pid, signal.SIGSTOP)
            figures = _drive(urls, bare_url, dbs, serials, workdir, token=token,
                             duration_s=duration_s, connections=connections, warmup_s=warmup_s)
            figures["workers_paused_during_load"] = pause_workers
            figures["seed"] = {"pumps": pumps, "seconds": seed_s}
            figures["memory_mb"] = {
                **{s: rss_mb(procs[s].pid) for s in SERVICES},
                **{f"{s}_worker": rss_mb(w.pid) for s, w in zip(SERVICES, workers, strict=True)},
                "bare_app": rss_mb(bare.pid), "aim": f"< {RSS_AIM_MB:.0f} MB each"}
            figures["memory_mb"]["met"] = all(
                figures["memory_mb"][k] < RSS_AIM_MB
                for s in SERVICES for k in (s, f"{s}_worker"))
            if profile:
                figures["profiles"] = _profile(urls, dbs, serials, workdir, procs, token=token,
                                               duration_s=min(duration_s, 20),
                                               connections=connections)
            figures["table"] = _table(figures)
            return figures
        except Exception:
            for name in (*SERVICES, "bare"):
                log_path = workdir / f"{name}.log"
                if log_path.exists():
                    print(f"--- {name} log (tail) ---\n{log_path.read_text(errors='replace')[-3000:]}",
                          file=sys.stderr)
            raise
    raise AssertionError("unreachable")


def _drive(urls: dict[str, str], bare_url: str, dbs: dict[str, str], serials: list[str],
           workdir: Path, *, token: str, duration_s: int, connections: int,
           warmup_s: int) -> dict[str, Any]:
    """Each endpoint, ours then the baseline, a warm-up then the measured run."""
    serial_file = workdir / "serials.txt"
    serial_file.write_text("\n".join(serials) + "\n")
    due_before = (datetime.now(UTC) + timedelta(days=WORKLIST_HORIZON_DAYS)).strftime("%Y-%m-%dT%H:%M:%SZ")
    half = len(serials) // 2
    refill_pumps = {"ours": serials[:half], "bare": serials[half:]}
    figures: dict[str, Any] = {"duration_s": duration_s, "connections": connections,
                               "cpus": os.cpu_count(), "load_average_before": os.getloadavg()[0]}
    for name, label, service in ENDPOINTS:
        result: dict[str, Any] = {"endpoint": label}
        for side in ("ours", "bare"):
            url = urls[service] if side == "ours" else bare_url
            for seconds in (warmup_s, duration_s):
                if name == "get_pump":
                    script, args = "get_pump.lua", [str(serial_file)]
                elif name == "worklist":
                    script, args = "worklist.lua", [due_before, ",".join(CENTERS)]
                else:
                    plan = workdir / f"refills-{side}.tsv"
                    write_refill_plan(dbs["scheduling"], refill_pumps[side], plan)
                    script = "post_refill.lua"
                    args = [str(plan), str(connections), str(REFILL_STEP_S), str(int(time.time()) - 60)]
                if seconds:
                    result[side] = run_wrk(url, script, args, duration_s=seconds,
                                           connections=connections, token=token)
        ours, bare = result["ours"], result["bare"]
        result["ratio_p50"] = _ratio(ours["p50_ms"], bare["p50_ms"])
        result["ratio_p99"] = _ratio(ours["p99_ms"], bare["p99_ms"])
        result["ratio_rps"] = _ratio(ours["rps"], bare["rps"])
        result["aim"] = AIM
        result["met"] = bool(result["ratio_p50"] is not None and result["ratio_p99"] is not None
                             and result["ratio_p50"] <= LATENCY_RATIO_AIM
                             and result["ratio_p99"] <= LATENCY_RATIO_AIM
                             and ours["errors"] == 0)
        figures[name] = result
        print(f"{label}: ours {_brief(ours)} | bare {_brief(bare)} | "
              f"p50 x{result['ratio_p50']} p99 x{result['ratio_p99']}", flush=True)
    figures["load_average_after"] = os.getloadavg()[0]
    return figures


def _brief(f: dict[str, Any]) -> str:
    text = f"{f['rps']} rps p50 {f['p50_ms']} ms p99 {f['p99_ms']} ms errors {f['errors']}"
    return text + (f" {f['statuses']} {f['socket_errors']}" if f["errors"] else "")


def _profile(urls: dict[str, str], dbs: dict[str, str], serials: list[str], workdir: Path,
             procs: dict[str, subprocess.Popen[bytes]], *, token: str, duration_s: int,
             connections: int) -> dict[str, Any]:
    """Hot spots of each service under each endpoint's load (py-spy, a separate run)."""
    profiles: dict[str, Any] = {}
    due_before = (datetime.now(UTC) + timedelta(days=WORKLIST_HORIZON_DAYS)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for name, _label, service in ENDPOINTS:
        if name == "get_pump":
            script, args = "get_pump.lua", [str(workdir / "serials.txt")]
        elif name == "worklist":
            script, args = "worklist.lua", [due_before, ",".join(CENTERS)]
        else:
            plan = workdir / "refills-profile.tsv"
            write_refill_plan(dbs["scheduling"], serials[: len(serials) // 2], plan)
            script = "post_refill.lua"
            args = [str(plan), str(connections), str(REFILL_STEP_S), str(int(time.time()) - 60)]

        def drive(script: str = script, args: list[str] = args, service: str = service) -> None:
            run_wrk(urls[service], script, args, duration_s=duration_s, connections=connections,
                    token=token)

        profiles[name] = profile_hot_spots(procs[service].pid, drive, duration_s + 2,
                                           workdir.parent / f"hai-bench-api-{name}.pyspy.txt")
    return profiles


def _table(figures: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, label, _service in ENDPOINTS:
        r = figures[name]
        ours, bare = r["ours"], r["bare"]
        for key, unit in (("p50_ms", "p50 (ms)"), ("p99_ms", "p99 (ms)")):
            ratio = r["ratio_p50"] if key == "p50_ms" else r["ratio_p99"]
            rows.append({"measure": f"{label} {unit}", "ours": ours[key], "baseline": bare[key],
                         "ratio": ratio, "aim": f"≤ {LATENCY_RATIO_AIM}x",
                         "met": ratio is not None and ratio <= LATENCY_RATIO_AIM})
        rows.append({"measure": f"{label} throughput (req/s)", "ours": ours["rps"],
                     "baseline": bare["rps"], "ratio": r["ratio_rps"], "aim": "", "met": ""})
        rows.append({"measure": f"{label} errors", "ours": ours["errors"], "baseline": bare["errors"],
                     "ratio": "", "aim": "0", "met": ours["errors"] == 0})
    memory = figures["memory_mb"]
    for s in SERVICES:
        for key, what in ((s, "API"), (f"{s}_worker", "worker")):
            rows.append({"measure": f"{s} {what} RSS after load (MB)", "ours": memory[key],
                         "baseline": memory["bare_app"],
                         "ratio": _ratio(memory[key], memory["bare_app"]),
                         "aim": f"< {RSS_AIM_MB:.0f} MB", "met": memory[key] < RSS_AIM_MB})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api_load")
    parser.add_argument("--duration", type=int, default=30, help="seconds of load per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--pumps", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=3, help="seconds of unmeasured load first")
    parser.add_argument("--pause-workers", action="store_true",
                        help="isolate the request path: pause the background work during the load")
    parser.add_argument("--profile", action="store_true",
                        help="then profile each service under load with py-spy")
    args = parser.parse_args(argv)
    figures = run(duration_s=args.duration, connections=args.connections, pumps=args.pumps,
                  warmup_s=args.warmup, profile=args.profile, pause_workers=args.pause_workers)
    print(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
