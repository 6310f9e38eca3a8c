"""Inventory API latency at 100,000 pumps on PostgreSQL, through HTTP (issue 3).

Starts `hai serve inventory --no-worker` as its own process on a fresh database, bulk-loads the
pumps with COPY, then times, one request at a time over a kept-alive connection:
  - `GET /v1/pumps/{serial}` (a random serial each time),
  - a filtered list page `GET /v1/pumps?status=in_stock&model_code=…&limit=50` (random model,
    and a cursor from a random place in the list for half of them),
  - `GET /v1/pumps?lot_number=…` and `?expiring_before=…&status=in_stock` pages.
Baselines from the same run: `GET /healthz` (the HTTP stack's floor, no database), and the
same filtered page with the filter indexes dropped (what the indexes buy). Aim: p99 < 20 ms.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench._infra import database, stop, wait_ready
from shared.auth import mint_token
from shared.settings import DEV_JWT_SECRET
from tests.doubles import free_port

ROOT = Path(__file__).resolve().parent.parent
HAI = str(Path(sys.executable).parent / "hai")
MODELS = ("DEMO-INTERA-3000", "DEMO-CODMAN-3000", "DEMO-SYNCHROMED-II")
GTINS = {"DEMO-INTERA-3000": "00812345000016", "DEMO-CODMAN-3000": "00812345000023",
         "DEMO-SYNCHROMED-II": "00812345000030"}
FILTER_INDEXES = ("ix_pumps_status_model_serial", "ix_pumps_model_lot_serial", "ix_pumps_lot_serial",
                  "ix_pumps_patient_serial", "ix_pumps_expiry_serial")
AIM_P99_MS = 20.0
LOTS = 500


def _serial(i: int) -> str:
    return f"BN{i:07d}"


def _status(i: int) -> str:
    r = i % 100
    if r < 70:
        return "in_stock"
    if r < 90:
        return "implanted"
    if r < 95:
        return "quarantined"
    return "explanted" if r < 98 else "retired"


def bulk_load(pg_url: str, pumps: int) -> float:
    """COPY `pumps` pumps (and one history row each) into the database; returns seconds."""
    import psycopg

    started = time.monotonic()
    now = datetime.now(UTC)
    rng = random.Random(7)
    buf = io.StringIO()
    hist = io.StringIO()
    for i in range(pumps):
        model = MODELS[i % len(MODELS)]
        status = _status(i)
        expiry = date(2026, 1, 1) + timedelta(days=rng.randrange(0, 4 * 365))
        implanted = status in ("implanted", "explanted")
        mrn = f"MRN{i:07d}" if implanted else "\\N"
        center = f"CTR-{i % 50:02d}" if implanted else "\\N"
        at = (now - timedelta(days=rng.randrange(1, 700))).isoformat() if implanted else "\\N"
        buf.write("\t".join([
            _serial(i), model, GTINS[model], f"LOT-{rng.randrange(LOTS):04d}", expiry.isoformat(),
            "30.0", f"{rng.uniform(0.9, 1.1):.3f}", status, f"shelf {i % 40}", mrn, center, at,
            now.isoformat(), now.isoformat()]) + "\n")
        hist.write("\t".join([_serial(i), now.isoformat(), "bench", "register", "\\N", "in_stock",
                              "{}"]) + "\n")
    conninfo = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as conn:
        with conn.cursor() as cur:
            with cur.copy("COPY pumps (serial_number, model_code, gtin, lot_number, expiry_date, "
                          "reservoir_ml, labeled_flow_ml_per_day, status, location, patient_mrn, "
                          "center, implanted_at, created_at, updated_at) FROM STDIN") as copy:
                copy.write(buf.getvalue())
            with cur.copy("COPY device_history (serial_number, at, actor, action, from_status, "
                          "to_status, details) FROM STDIN") as copy:
                copy.write(hist.getvalue())
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE pumps")
        conn.execute("VACUUM ANALYZE device_history")
    return time.monotonic() - started


def drop_filter_indexes(pg_url: str) -> None:
    """Drop the list filters' indexes (for the baseline), leaving the primary key."""
    import psycopg

    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"),
                         autocommit=True) as conn:
        for name in FILTER_INDEXES:
            conn.execute(f'DROP INDEX IF EXISTS "{name}"')
        conn.execute("ANALYZE pumps")


def percentiles(samples_s: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max in milliseconds."""
    ordered = sorted(samples_s)
    n = len(ordered)

    def pick(q: float) -> float:
        return ordered[min(n - 1, int(q * n))] * 1000

    return {"p50_ms": round(pick(0.50), 2), "p99_ms": round(pick(0.99), 2),
            "max_ms": round(ordered[-1] * 1000, 2), "n": n}


def time_requests(client: httpx.Client, make: Callable[[int], tuple[str, dict[str, Any]]],
                  requests: int, warmup: int) -> dict[str, float]:
    """Time `requests` sequential GETs (after a warm-up); every answer must be 200."""
    samples: list[float] = []
    for i in range(warmup + requests):
        path, params = make(i)
        started = time.perf_counter()
        response = client.get(path, params=params)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} {params} → {response.status_code}: {response.text[:300]}")
        if i >= warmup:
            samples.append(elapsed)
    return percentiles(samples)


class ServiceProcess:
    """`hai serve inventory --no-worker` on a free port."""

    def __init__(self, pg_url: str, secret: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "HAI_INVENTORY_DATABASE_URL": pg_url, "HAI_JWT_SECRET": secret,
               "HAI_AMQP_URL": "", "HAI_ENV": "development", "HAI_LOG_LEVEL": "WARNING"}
        self.proc = subprocess.Popen([HAI, "serve", "inventory", "--no-worker", "--port",
                                      str(self.port)], cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(self.url, self.proc, path="/healthz", timeout_s=60)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        stop(self.proc)


def run(pumps: int = 100_000, requests: int = 2000, warmup: int = 200) -> dict[str, Any]:
    """Load `pumps` pumps, then measure p50/p99 of the lookups; return the figures."""
    secret = os.environ.get("HAI_JWT_SECRET", DEV_JWT_SECRET)
    token = mint_token("bench", ["nurse"], secret=secret)
    rng = random.Random(42)
    with database("inventory") as pg_url:
        service = ServiceProcess(pg_url, secret)  # migrates the schema and seeds the catalogue
        try:
            load_s = bulk_load(pg_url, pumps)
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=service.url, headers=headers, timeout=30) as client:
                in_stock_cursors = _cursors(client, rng)

                def by_serial(_: int) -> tuple[str, dict[str, Any]]:
                    return f"/v1/pumps/{_serial(rng.randrange(pumps))}", {}

                def filtered_page(i: int) -> tuple[str, dict[str, Any]]:
                    model = MODELS[i % len(MODELS)]
                    params: dict[str, Any] = {"status": "in_stock", "model_code": model, "limit": 50}
                    if i % 2 and in_stock_cursors[model]:
                        params["cursor"] = rng.choice(in_stock_cursors[model])
                    return "/v1/pumps", params

                def by_lot(_: int) -> tuple[str, dict[str, Any]]:
                    return "/v1/pumps", {"lot_number": f"LOT-{rng.randrange(LOTS):04d}", "limit": 50}

                def expiring(_: int) -> tuple[str, dict[str, Any]]:
                    before = date(2026, 1, 1) + timedelta(days=rng.randrange(10, 4 * 365))
                    return "/v1/pumps", {"expiring_before": before.isoformat(),
                                         "status": "in_stock", "limit": 50}

                figures: dict[str, Any] = {"pumps": pumps, "requests_each": requests,
                                           "bulk_load_s": round(load_s, 1),
                                           "load_average_before": os.getloadavg()[0],
                                           "cpus": os.cpu_count()}
                figures["healthz"] = time_requests(client, lambda _: ("/healthz", {}), requests, warmup)
                figures["get_by_serial"] = time_requests(client, by_serial, requests, warmup)
                figures["filtered_page"] = time_requests(client, filtered_page, requests, warmup)
                figures["lot_page"] = time_requests(client, by_lot, requests // 2, warmup // 2)
                figures["expiring_page"] = time_requests(client, expiring, requests // 2, warmup // 2)
                drop_filter_indexes(pg_url)
                figures["filtered_page_without_indexes"] = time_requests(
                    client, filtered_page, max(200, requests // 10), 20)
                figures["lot_page_without_indexes"] = time_requests(
                    client, by_lot, max(200, requests // 10), 20)
        finally:
            service.stop()
    figures["load_average_after"] = os.getloadavg()[0]
    figures["table"] = _table(figures)
    return figures


def _cursors(client: httpx.Client, rng: random.Random) -> dict[str, list[str]]:
    """Cursors from random places in each model's in-stock list (for pages deep in the list)."""
    out: dict[str, list[str]] = {}
    for model in MODELS:
        cursors: list[str] = []
        cursor: str | None = None
        for _ in range(20):
            params: dict[str, Any] = {"status": "in_stock", "model_code": model,
                                      "limit": rng.randrange(50, 500)}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/v1/pumps", params=params).json()
            cursor = page["next_cursor"]
            if cursor is None:
                break
            cursors.append(cursor)
        out[model] = cursors
    return out


def _table(f: dict[str, Any]) -> list[dict[str, str]]:
    def row(measure: str, ours: dict[str, float], base: dict[str, float], base_name: str) -> dict[str, str]:
        return {"measure": measure, "ours": f"p50 {ours['p50_ms']} ms, p99 {ours['p99_ms']} ms",
                "baseline": f"{base_name}: p50 {base['p50_ms']} ms, p99 {base['p99_ms']} ms",
                "ratio": f"{ours['p99_ms'] / base['p99_ms']:.2f}x p99",
                "aim": f"p99 < {AIM_P99_MS:.0f} ms",
                "met": "yes" if ours["p99_ms"] < AIM_P99_MS else "no"}

    return [
        row("GET /v1/pumps/{serial}", f["get_by_serial"], f["healthz"], "GET /healthz"),
        row("filtered page (status, model, cursor)", f["filtered_page"],
            f["filtered_page_without_indexes"], "same without filter indexes"),
        row("page by lot_number", f["lot_page"], f["lot_page_without_indexes"],
            "same without filter indexes"),
        row("page expiring_before + status", f["expiring_page"], f["healthz"], "GET /healthz"),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: run and print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.inventory_api", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pumps", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args(argv)
    f = run(args.pumps, args.requests)
    print(f"pumps: {f['pumps']} (loaded in {f['bulk_load_s']} s); {f['requests_each']} requests each")
    print(f"load average {f['load_average_before']:.1f} → {f['load_average_after']:.1f} "
          f"on {f['cpus']} CPUs (p99 on a shared machine is mostly CPU contention)")
    for name in ("healthz", "get_by_serial", "filtered_page", "lot_page", "expiring_page",
                 "filtered_page_without_indexes", "lot_page_without_indexes"):
        s = f[name]
        print(f"  {name:32s} p50 {s['p50_ms']:7.2f} ms   p99 {s['p99_ms']:7.2f} ms   "
              f"max {s['max_ms']:7.2f} ms   (n={s['n']})")
    for r in f["table"]:
        print(f"  {r['measure']}: {r['ours']} | aim {r['aim']}: {r['met']}")


if __name__ == "__main__":
    main()
