"""Benchmark: flow surveillance and one centre's worklist at consortium size, on PostgreSQL.

    .venv/bin/python -m bench surveillance      (or: python -m bench.surveillance --pumps 100000)

A fresh database holds 50 centres, N patients with their implanted pump (5 models, lots of 50
pumps), active therapy and open appointment (bench.sweep's load), and 10 measured flow readings
per pump (refills), loaded with COPY. Each lot's pumps run around its own bias (a few lots +8 %).
Measured, each beside a bare query of the same data:

- the rebuild from scratch (every pump's and lot's sums from the refills, every lot tested,
  the drifting ones announced), beside one bare SQL aggregate of the per-pump means per lot;
- the added work of one new reading (drift.on_reading: its pump's and lot's sums, its lot's
  test; and the trend query) inside a transaction as the refill's would be (its commit, the
  refill's own, not counted), beside the bare SQL that recomputes that
  model's per-pump means from the refills (what the work would cost without running sums);
- `GET /v1/appointments?center=…` (a page of 50, through the app in-process under a
  TestClient: token, query, audit rows, JSON), beside the bare SQL of the same page.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from bench._infra import database
from bench.sweep import NOW, load
from services.scheduling import app as scheduling_app
from services.scheduling import drift
from services.scheduling.models import ImplantedPump
from services.scheduling.settings import SchedulingSettings
from shared.auth import mint_token
from shared.clock import MovableClock
from shared.messaging.inproc import InProcessBus
from shared.settings import DEV_JWT_SECRET

CENTRES = 50
MODELS = 5
LOT_SIZE = 50
READINGS_PER_PUMP = 10
DRIFTING_EVERY = 200  # one lot in 200 runs +8 %
SAMPLES = 200


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def seed_readings(url: str, dbname: str, pumps: int) -> None:
    """Models and lots on the pumps bench.sweep loaded, and their readings, by COPY."""
    import psycopg

    from bench.sweep import PG

    rng = random.Random(22)
    with psycopg.connect(dbname=dbname, **PG) as conn:  # type: ignore[arg-type]
        cur = conn.cursor()
        number = "substr(serial_number, 2)::int"
        cur.execute(f"UPDATE implanted_pumps SET model_code = 'MODEL-' || ({number} % {MODELS}), "
                    f"lot_number = 'LOT-' || ({number} % {MODELS}) || '-' || "
                    f"({number} / {MODELS * LOT_SIZE})")
        with cur.copy("COPY refills (id, pump_serial, patient_mrn, center, performed_at, "
                      "residual_volume_ml, fill_volume_ml, fill_type, elapsed_days, "
                      "measured_flow_ml_per_day, expected_flow_ml_per_day, flow_deviation_pct, "
                      "outside_window, recorded_by, created_at, status) FROM STDIN") as cp:
            for i in range(pumps):
                lot = i // (MODELS * LOT_SIZE)
                bias = (8.0 if lot % DRIFTING_EVERY == 7 else 0.0) + rng.gauss(0, 2)
                first = NOW - timedelta(days=14 * READINGS_PER_PUMP + (i % 14))
                for k in range(READINGS_PER_PUMP):
                    dev = round(bias + rng.gauss(0, 2), 2)
                    cp.write_row((str(uuid.UUID(int=(2 << 64) + i * READINGS_PER_PUMP + k)),
                                  f"S{i}", f"M{i}", f"C{i % CENTRES}",
                                  first + timedelta(days=14 * k), 30 - 14 * (1 + dev / 100), 30.0,
                                  "saline", 14.0, 1 + dev / 100, 1.0, dev, False, "bench", NOW,
                                  "recorded"))
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")


BARE_LOTS = text("""
    SELECT model_code, lot_number, count(*), avg(m), stddev_samp(m)
    FROM (SELECT p.model_code, p.lot_number, avg(r.flow_deviation_pct) AS m
          FROM refills r JOIN implanted_pumps p ON p.serial_number = r.pump_serial
          WHERE r.status = 'recorded' AND r.flow_deviation_pct IS NOT NULL
          GROUP BY r.pump_serial, p.model_code, p.lot_number) per_pump
    GROUP BY model_code, lot_number""")
BARE_MODEL = text("""
    SELECT p.lot_number, count(*), avg(r.flow_deviation_pct)
    FROM refills r JOIN implanted_pumps p ON p.serial_number = r.pump_serial
    WHERE p.model_code = :model AND r.status = 'recorded'
    GROUP BY r.pump_serial, p.lot_number""")
BARE_WORKLIST = text("""
    SELECT * FROM appointments WHERE center = :center ORDER BY due_at, id LIMIT 50""")


def run(pumps: int = 100_000) -> dict[str, Any]:
    """Seed, then time the rebuild, the added work per reading and the worklist page."""
    import logging

    logging.disable(logging.INFO)
    with database("surveillance") as url:
        dbname = url.rsplit("/", 1)[1]
        t0 = time.perf_counter()
        load(url, dbname, pumps)
        seed_readings(url, dbname, pumps)
        load_s = time.perf_counter() - t0
        print(f"loaded {pumps:,} pumps, {pumps * READINGS_PER_PUMP:,} readings in {load_s:.0f} s",
              flush=True)
        settings = SchedulingSettings(env="test", scheduling_database_url=url, amqp_url=None)
        runtime = scheduling_app.bootstrap(settings, clock=MovableClock(NOW), bus=InProcessBus())
        engine = runtime.engine

        # the rebuild from scratch, and the bare aggregate of the same data
        rebuild_s, bare_s, facts = [], [], {}
        for _ in range(3):
            t = time.perf_counter()
            facts = drift.run_rebuild(runtime)
            rebuild_s.append(time.perf_counter() - t)
            with engine.connect() as conn:
                t = time.perf_counter()
                lots = conn.execute(BARE_LOTS).all()
                bare_s.append(time.perf_counter() - t)
        print(f"rebuild {min(rebuild_s):.2f} s ({facts}); bare aggregate {min(bare_s):.2f} s "
              f"({len(lots)} lots)", flush=True)

        # one new reading: the added work, in its own transaction, and the bare recomputation
        rng = random.Random(5)
        reading_s, model_s = [], []
        for _ in range(SAMPLES):
            serial = f"S{rng.randrange(pumps)}"
            with runtime.uow_factory() as uow:
                pump = uow.session.get(ImplantedPump, serial)
                assert pump is not None
                t = time.perf_counter()
                drift.on_reading(uow, pump=pump, deviation_pct=rng.gauss(0, 3), settings=settings)
                drift.pump_trend(uow, pump_serial=serial, settings=settings)
                reading_s.append(time.perf_counter() - t)
                uow.commit()  # the refill's own commit in the service: not added work
        for k in range(20):
            with engine.connect() as conn:
                t = time.perf_counter()
                conn.execute(BARE_MODEL, {"model": f"MODEL-{k % MODELS}"}).all()
                model_s.append(time.perf_counter() - t)
        print(f"per reading p50 {_ms(_p(reading_s, .5))} p99 {_ms(_p(reading_s, .99))} ms; "
              f"bare model recomputation p50 {_ms(_p(model_s, .5))} ms", flush=True)

        # one centre's worklist page, through the app, and the bare SQL of the same page
        client = TestClient(scheduling_app.create_app(runtime))
        headers = {"Authorization": "Bearer " + mint_token("bench", ["nurse"], secret=DEV_JWT_SECRET)}
        page_s, page_sql_s = [], []
        for k in range(SAMPLES):
            centre = f"C{k % CENTRES}"
            t = time.perf_counter()
            r = client.get("/v1/appointments", params={"center": centre, "limit": 50}, headers=headers)
            page_s.append(time.perf_counter() - t)
            assert r.status_code == 200 and len(r.json()["items"]) == min(50, pumps // CENTRES), r.text[:300]
            with engine.connect() as conn:
                t = time.perf_counter()
                conn.execute(BARE_WORKLIST, {"center": centre}).all()
                page_sql_s.append(time.perf_counter() - t)
        print(f"worklist p50 {_ms(_p(page_s, .5))} p99 {_ms(_p(page_s, .99))} ms; bare SQL "
              f"p50 {_ms(_p(page_sql_s, .5))} p99 {_ms(_p(page_sql_s, .99))} ms", flush=True)
        engine.dispose()

    rebuild, bare = min(rebuild_s), min(bare_s)
    p99_reading, p99_page = _p(reading_s, .99), _p(page_s, .99)
    return {
        "pumps": pumps, "centres": CENTRES, "readings": pumps * READINGS_PER_PUMP,
        "lots": facts.get("lots"), "drifting_lots": facts.get("drifting"), "load_s": round(load_s, 1),
        "rebuild_s": [round(s, 3) for s in rebuild_s], "bare_lots_sql_s": [round(s, 3) for s in bare_s],
        "reading_ms_p50": _ms(_p(reading_s, .5)), "reading_ms_p99": _ms(p99_reading),
        "bare_model_sql_ms_p50": _ms(_p(model_s, .5)),
        "worklist_ms_p50": _ms(_p(page_s, .5)), "worklist_ms_p99": _ms(p99_page),
        "worklist_sql_ms_p50": _ms(_p(page_sql_s, .5)), "worklist_sql_ms_p99": _ms(_p(page_sql_s, .99)),
        "measured_at": f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC}",
        "table": [
            {"measure": f"lot surveillance from scratch: {pumps:,} pumps, "
                        f"{pumps * READINGS_PER_PUMP:,} readings, {facts.get('lots')} lots, "
                        f"{CENTRES} centres (best of 3)",
             "ours": f"{rebuild:.2f} s", "baseline": f"{bare:.2f} s (bare SQL: per-pump means "
                                                    "per lot, one aggregate)",
             "ratio": f"{rebuild / bare:.1f}×", "aim": "< 5 s", "met": "yes" if rebuild < 5 else "no"},
            {"measure": f"added work per new reading (sums, lot test, trend; in the refill's transaction), "
                        f"{SAMPLES} readings, p50 / p99",
             "ours": f"{_ms(_p(reading_s, .5))} / {_ms(p99_reading)} ms",
             "baseline": f"{_ms(_p(model_s, .5))} ms (bare SQL recomputing one model's pump "
                         "means from the refills, p50)",
             "ratio": "-", "aim": "< 10 ms", "met": "yes" if p99_reading < 0.010 else "no"},
            {"measure": f"`GET /v1/appointments?center=` page of 50, one centre of {CENTRES} "
                        f"({pumps:,} appointments), in-process, {SAMPLES} requests, p50 / p99",
             "ours": f"{_ms(_p(page_s, .5))} / {_ms(p99_page)} ms",
             "baseline": f"{_ms(_p(page_sql_s, .5))} / {_ms(_p(page_sql_s, .99))} ms (bare SQL "
                         "of the same page)",
             "ratio": "-", "aim": "p99 < 100 ms", "met": "yes" if p99_page < 0.100 else "no"},
        ],
    }


def main() -> None:
    """Command line: --pumps N (readings: 10 per pump)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pumps", type=int, default=100_000)
    args = parser.parse_args()
    run(args.pumps)


if __name__ == "__main__":
    main()
