"""Benchmark: one scheduling sweep (every job) over N active therapies with 1 % due, on PostgreSQL.

    .venv/bin/python -m bench.sweep [--sizes 10000,100000,1000000]

Each size gets its own fresh database (dropped afterwards): N patients, implanted pumps,
therapies (half FUDR alternating, half saline maintenance) and their open appointments, loaded
with COPY. 1 % of the appointments are due: due (or overdue) within −24 h … +36 h of "now", with
the pump projected empty a day after due, so that they raise due-soon or overdue, near-empty and,
for chemo fills, a pharmacy order. The rest are due 5–13 days ahead. The first sweep announces
every fact; the second finds nothing new and shows the floor cost of a sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from services.scheduling.settings import SchedulingSettings
from shared.clock import MovableClock
from shared.messaging.inproc import InProcessBus
from shared.migrations import upgrade

PG = {"host": os.environ.get("HAI_TEST_PG_HOST", "127.0.0.1"),
      "port": int(os.environ.get("HAI_TEST_PG_PORT", "5432")),
      "user": os.environ.get("HAI_TEST_PG_USER", "postgres")}
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DUE_EVERY = 100  # 1 %


def _admin(sql: str) -> None:
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:  # type: ignore[arg-type]
        conn.execute(sql)


def load(url: str, dbname: str, n: int, *, now: datetime = NOW) -> None:
    """Load n therapies with their patient, pump and open appointment (1 % due around `now`)
    by COPY."""
    upgrade("scheduling", url)
    with psycopg.connect(dbname=dbname, **PG) as conn:  # type: ignore[arg-type]
        cur = conn.cursor()
        with cur.copy("COPY patients (mrn, given_name, family_name, birth_date, weight_kg, "
                      "height_cm, sex, center, created_at, updated_at) FROM STDIN") as cp:
            for i in range(n):
                cp.write_row((f"M{i}", "Given", "Family", date(1960, 1, 1), 70.0, 175.0, "male",
                              f"C{i % 50}", now, now))
        with cur.copy("COPY implanted_pumps (serial_number, patient_mrn, center, model_code, "
                      "reservoir_ml, labeled_flow_ml_per_day, status, implanted_at, updated_at) "
                      "FROM STDIN") as cp:
            for i in range(n):
                cp.write_row((f"S{i}", f"M{i}", f"C{i % 50}", "INTERA-3000", 30.0, 1.0,
                              "implanted", now - timedelta(days=60), now))
        therapy_ids = [str(uuid.UUID(int=i + 1)) for i in range(n)]
        with cur.copy("COPY therapies (id, patient_mrn, pump_serial, regimen, status, start_on, "
                      "refill_interval_days, fudr_mg_per_kg_day, dosing_weight, created_by, "
                      "created_at, updated_at) FROM STDIN") as cp:
            for i in range(n):
                regimen = "fudr_alternating" if i % 2 else "saline_maintenance"
                cp.write_row((therapy_ids[i], f"M{i}", f"S{i}", regimen, "active",
                              date(2026, 10, 1), 14, 0.12 if i % 2 else None, "actual", "bench",
                              now, now))
        with cur.copy("COPY appointments (id, therapy_id, patient_mrn, center, pump_serial, "
                      "fill_type, due_at, status, projected_empty_at, created_at, updated_at) "
                      "FROM STDIN") as cp:
            for i in range(n):
                # chemo fills for FUDR therapies (odd i), saline for maintenance (even i)
                fill = "chemo" if i % 2 else "saline"
                if i % (2 * DUE_EVERY) in (0, 1):  # 1 % due, half of them chemo
                    due = now + timedelta(hours=-24 + (i // DUE_EVERY) % 60)
                    empty = due + timedelta(days=1)
                else:
                    due = now + timedelta(days=5 + i % 9, minutes=i % 1440)
                    empty = due + timedelta(days=16)
                cp.write_row((str(uuid.UUID(int=(1 << 64) + i)), therapy_ids[i], f"M{i}",
                              f"C{i % 50}", f"S{i}", fill, due, "scheduled", empty, now, now))
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        # write the load's WAL out now: otherwise the checkpoint it triggers runs during the
        # timed sweep, which a running service (its rows written over weeks) never meets
        conn.execute("CHECKPOINT")


def run(sizes: list[int]) -> dict[str, Any]:
    """Load and sweep each size; returns the figures per size."""
    from services.scheduling.app import bootstrap
    from services.scheduling.jobs import sweep

    results: dict[str, Any] = {}
    for n in sizes:
        dbname = f"hai_bench_sweep_{os.getpid()}_{n}"
        _admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        _admin(f'CREATE DATABASE "{dbname}"')
        url = f"postgresql+psycopg://{PG['user']}@{PG['host']}:{PG['port']}/{dbname}"
        try:
            t0 = time.perf_counter()
            load(url, dbname, n)
            load_s = time.perf_counter() - t0
            settings = SchedulingSettings(env="test", scheduling_database_url=url, amqp_url=None)
            runtime = bootstrap(settings, clock=MovableClock(NOW), bus=InProcessBus())
            t1 = time.perf_counter()
            facts = sweep(runtime)
            first_s = time.perf_counter() - t1
            t2 = time.perf_counter()
            again = sweep(runtime)
            second_s = time.perf_counter() - t2
            runtime.engine.dispose()
            results[str(n)] = {
                "therapies": n, "due": (n + DUE_EVERY - 1) // DUE_EVERY,
                "load_s": round(load_s, 2), "sweep_s": round(first_s, 3),
                "idle_sweep_s": round(second_s, 3),
                "facts": {k: v for k, v in facts.items() if not k.endswith("_seconds")},
                "job_seconds": {k[:-8]: v for k, v in facts.items() if k.endswith("_seconds")},
                "idle_facts_ok": again["ok"],
            }
        finally:
            _admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        row = results[str(n)]
        print(f"{n:>9} therapies, {row['due']:>6} due: sweep {row['sweep_s']:.3f} s "
              f"(idle sweep {row['idle_sweep_s']:.3f} s; load {row['load_s']:.1f} s) "
              f"{json.dumps(row['facts'])} per job: {json.dumps(row['job_seconds'])}", flush=True)
    return results


def main() -> None:
    """Command line: --sizes 10000,100000[,1000000]."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10000,100000")
    args = parser.parse_args()
    import logging

    logging.disable(logging.INFO)
    run([int(s) for s in args.sizes.split(",") if s])


if __name__ == "__main__":
    main()
