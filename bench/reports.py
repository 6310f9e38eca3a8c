"""Benchmark: the registry's reports at consortium size, on PostgreSQL, each beside a bare SQL
query of the same data.

    .venv/bin/python -m bench reports        (or: python -m bench.reports --refills 1000000)

Two fresh databases (dropped afterwards), seeded by bulk `INSERT … SELECT generate_series`:
scheduling with 50 centres, 100,000 patients and therapies, N refills (each a flow reading,
every one completing its own appointment, over the twelve months before "now") and N/5 drug
deliveries; inventory with 100,000 pumps (80 % implanted, 10 % explanted with one of four
reasons, the rest in stock or quarantined). Each report is asked through the service's HTTP
app (routing, validation, the SQL, JSON or CSV), median of 5 after one warm-up, for the whole
consortium and for one centre; the baseline is the report's main aggregate run alone as
plain SQL on a psycopg connection (for the refill report: its one pass, written by hand; the
refills carry their appointment's due time as the service records it). The refill report is
measured twice: computed at every
request (`HAI_REPORT_MAX_AGE_SECONDS=0`), and as served (from its period's snapshot, which
the warm-up, or in production the worker's job, computed).
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

from bench._infra import PG_HOST, PG_PORT, PG_USER, database
from shared.migrations import upgrade

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CENTERS = 50
PATIENTS = 100_000
PUMPS = 100_000
ROUNDS = 5

SEED_SCHEDULING = """
INSERT INTO patients (mrn, given_name, family_name, birth_date, weight_kg, height_cm, sex, center,
                      created_at, updated_at)
SELECT 'M' || i, 'Given', 'Family', date '1960-01-01', 70, 175, 'male', 'C' || (i % {c}),
       %(now)s, %(now)s FROM generate_series(0::bigint, {p} - 1) i;
INSERT INTO therapies (id, patient_mrn, pump_serial, regimen, status, start_on,
                       refill_interval_days, dosing_weight, created_by, created_at, updated_at)
SELECT 'T' || i, 'M' || i, 'S' || i, 'saline_maintenance', 'active', date '2025-11-01', 14,
       'actual', 'bench', %(now)s, %(now)s FROM generate_series(0::bigint, {p} - 1) i;
INSERT INTO appointments (id, therapy_id, patient_mrn, center, pump_serial, fill_type, due_at,
                          status, due_basis, created_at, updated_at)
SELECT 'A' || i, 'T' || (i % {p}), 'M' || (i % {p}), 'C' || ((i % {p}) % {c}), 'S' || (i % {p}),
       'saline', %(start)s + (i::float8 / {n} * 360) * interval '1 day', 'completed', 'interval',
       %(now)s, %(now)s FROM generate_series(0::bigint, {n} - 1) i;
INSERT INTO refills (id, pump_serial, patient_mrn, center, therapy_id, appointment_id,
                     appointment_due_at, performed_at, residual_volume_ml, fill_volume_ml,
                     fill_type, elapsed_days,
                     measured_flow_ml_per_day, expected_flow_ml_per_day, flow_deviation_pct,
                     outside_window, recorded_by, created_at, status)
SELECT 'R' || i, 'S' || (i % {p}), 'M' || (i % {p}), 'C' || ((i % {p}) % {c}), 'T' || (i % {p}),
       'A' || i, %(start)s + (i::float8 / {n} * 360) * interval '1 day',
       %(start)s + (i::float8 / {n} * 360) * interval '1 day'
         + ((i * 7919) % 200 - 60) * interval '1 hour',
       1.0, 30.0, 'saline', 14.0, 1 + ((i * 31) % 400 - 200) / 1000.0, 1.0,
       ((i * 31) % 400 - 200) / 10.0, abs((i * 7919) % 200 - 60) > 96, 'bench', %(now)s,
       'recorded'
FROM generate_series(0::bigint, {n} - 1) i;
INSERT INTO deliveries (id, appointment_id, therapy_id, patient_mrn, pump_serial, center,
                        needed_by, status, drugs, "order", created_at, updated_at,
                        late_announced_at)
SELECT 'D' || i, 'A' || (i * 5), 'T' || (i % {p}), 'M' || (i % {p}), 'S' || (i % {p}),
       'C' || ((i % {p}) % {c}), %(start)s + (i::float8 / {d} * 360) * interval '1 day',
       CASE WHEN i % 50 = 0 THEN 'cancelled' ELSE 'delivered' END, '[]', '{{}}', %(now)s,
       %(now)s,
       CASE WHEN i % 20 = 0 THEN %(start)s + (i::float8 / {d} * 360) * interval '1 day' END
FROM generate_series(0::bigint, {d} - 1) i;
INSERT INTO center_settings (center, flow_warning_pct, version, updated_by, updated_at)
SELECT 'C' || i, 10 + i % 10, 1, 'bench', %(now)s FROM generate_series(0::bigint, 9) i;
"""

SEED_INVENTORY = """
INSERT INTO pump_models (code, manufacturer, name, gtin, reservoir_ml, nominal_flow_ml_per_day,
                         demo, created_at)
VALUES ('INTERA-3000', 'Intera', 'Intera 3000', '00000000000017', 30, 1.0, true, %(now)s);
INSERT INTO pumps (serial_number, model_code, lot_number, expiry_date, reservoir_ml,
                   labeled_flow_ml_per_day, status, center, patient_mrn, implanted_at,
                   explanted_at, explant_reason, created_at, updated_at)
SELECT 'S' || i, 'INTERA-3000', 'L' || (i % 400), date '2030-01-01', 30, 1.0,
       CASE WHEN i % 10 < 8 THEN 'implanted' WHEN i % 10 = 8 THEN 'explanted'
            WHEN i % 20 = 9 THEN 'quarantined' ELSE 'in_stock' END,
       CASE WHEN i % 10 <= 8 THEN 'C' || (i % {c}) END,
       CASE WHEN i % 10 <= 8 THEN 'M' || i END,
       CASE WHEN i % 10 <= 8 THEN %(start)s END,
       CASE WHEN i % 10 = 8 THEN %(start)s + (i % 360) * interval '1 day' END,
       CASE WHEN i % 10 = 8 THEN (ARRAY['infection', 'pump failure', 'catheter occlusion',
                                        'end of therapy'])[1 + i % 4] END,
       %(now)s, %(now)s
FROM generate_series(0::bigint, {p} - 1) i;
"""

# the bare aggregates: what each report's main query does, as one plain SQL statement
BARE = {
    # the refill report's one pass (services/scheduling/reports.py): counts, the centres' own
    # bands, the hours overdue from the due time each refill recorded, the consortium's rows
    "refills": """
        SELECT date_trunc('month', timezone('UTC', r.performed_at)) AS month, r.center, count(*),
               count(*) FILTER (WHERE NOT r.outside_window), count(r.flow_deviation_pct),
               count(*) FILTER (WHERE abs(r.flow_deviation_pct) > coalesce(s.flow_warning_pct, 15)),
               count(*) FILTER (WHERE r.performed_at > r.appointment_due_at),
               percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (
                   ORDER BY date_part('epoch', r.performed_at - r.appointment_due_at) / 3600)
                   FILTER (WHERE r.performed_at > r.appointment_due_at)
        FROM refills r LEFT JOIN center_settings s ON s.center = r.center
        WHERE r.status = 'recorded'
          AND date_trunc('month', timezone('UTC', r.performed_at)) >= timezone('UTC', %(start)s)
          AND date_trunc('month', timezone('UTC', r.performed_at)) < timezone('UTC', %(end)s)
        GROUP BY ROLLUP (1, 2)""",
    # before issue 22's scale work: the counts by a scan and a hash, the percentiles by a join
    # of the appointments (their figures are kept beside, for comparison)
    "refill counts by a scan": """
        SELECT r.center, to_char(timezone('UTC', r.performed_at), 'YYYY-MM') AS month, count(*),
               sum(CASE WHEN r.outside_window THEN 0 ELSE 1 END),
               sum(CASE WHEN abs(r.flow_deviation_pct) > coalesce(s.flow_warning_pct, 15)
                        THEN 1 ELSE 0 END)
        FROM refills r LEFT JOIN center_settings s ON s.center = r.center
        WHERE r.status = 'recorded' AND r.performed_at >= %(start)s AND r.performed_at < %(end)s
        GROUP BY r.center, month""",
    "overdue percentiles": """
        SELECT r.center, to_char(timezone('UTC', r.performed_at), 'YYYY-MM') AS month,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM r.performed_at - a.due_at)),
               percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM r.performed_at - a.due_at))
        FROM refills r JOIN appointments a ON a.id = r.appointment_id
        WHERE r.status = 'recorded' AND r.performed_at >= %(start)s AND r.performed_at < %(end)s
          AND r.performed_at > a.due_at
        GROUP BY r.center, month""",
    "pumps": "SELECT center, status, count(*) FROM pumps GROUP BY center, status",
    "explants": """
        SELECT center, to_char(timezone('UTC', explanted_at), 'YYYY-MM') AS month,
               explant_reason, count(*)
        FROM pumps WHERE explanted_at >= %(start)s AND explanted_at < %(end)s
        GROUP BY center, month, explant_reason""",
}


def _median_ms(call: Callable[[], Any]) -> float:
    call()  # warm-up: plans, caches
    times = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        call()
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 1)


def _seed(url: str, service: str, sql: str, **sizes: int) -> float:
    upgrade(service, url)
    t = time.perf_counter()
    dbname = url.rsplit("/", 1)[1]
    start = datetime(2025, 12, 1, tzinfo=UTC)
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname) as conn:
        for statement in sql.format(**sizes).split(";\n"):
            if statement.strip():
                # `%` is psycopg's placeholder: the modulo operator doubled
                conn.execute(re.sub(r"%(?!\()", "%%", statement),
                             {"now": NOW, "start": start})
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
    return round(time.perf_counter() - t, 1)


def _bare(url: str, sql: str, start: datetime, end: datetime) -> float:
    dbname = url.rsplit("/", 1)[1]
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname) as conn:
        return _median_ms(lambda: conn.execute(sql, {"start": start, "end": end}).fetchall())


def _app(service: str, url: str, **overrides: Any) -> Any:
    from fastapi.testclient import TestClient

    from services.settings import HaiSettings
    from shared.clock import MovableClock
    from shared.messaging.inproc import InProcessBus

    module = __import__(f"services.{service}.app", fromlist=["bootstrap", "create_app"])
    settings = HaiSettings(env="test", amqp_url=None).model_copy(
        update={f"{service}_database_url": url, **overrides})
    runtime = module.bootstrap(settings, clock=MovableClock(NOW), bus=InProcessBus())
    return runtime, TestClient(module.create_app(runtime))


def _served(key: str) -> str:
    """How a refill report was answered (the others are computed at every request)."""
    if not key.startswith("refills"):
        return ""
    return "" if key.endswith("computed now") else ", from its period's snapshot"


def run(refills: int = 1_000_000) -> dict[str, Any]:
    """Seed, then time each report beside its bare query; returns the figures and a table."""
    from shared.auth import mint_token
    from shared.settings import DEV_JWT_SECRET

    headers = {"Authorization": f"Bearer {mint_token('bench', ['nurse'], secret=DEV_JWT_SECRET)}"}
    start, end = datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    period = {"from": "2025-12", "to": "2026-11"}
    figures: dict[str, Any] = {"centres": CENTERS, "patients": PATIENTS, "pumps": PUMPS,
                               "refills": refills, "deliveries": refills // 5, "rounds": ROUNDS}
    timings: dict[str, tuple[float, float, str]] = {}
    with database("reports_sched") as sched_url, database("reports_inv") as inv_url:
        figures["seed_scheduling_s"] = _seed(sched_url, "scheduling", SEED_SCHEDULING, c=CENTERS,
                                             p=PATIENTS, n=refills, d=refills // 5)
        figures["seed_inventory_s"] = _seed(inv_url, "inventory", SEED_INVENTORY, c=CENTERS,
                                            p=PUMPS)
        for service, url, path, params, bare, overrides, labels in (
                ("scheduling", sched_url, "/v1/reports/refills", period, "refills",
                 {"report_max_age_seconds": 0.0}, ("computed now",)),
                ("scheduling", sched_url, "/v1/reports/refills", period, "refills", {},
                 ("consortium", "one centre", "CSV")),
                ("inventory", inv_url, "/v1/reports/pumps", {}, "pumps", {},
                 ("consortium", "one centre", "CSV")),
                ("inventory", inv_url, "/v1/reports/explants", period, "explants", {},
                 ("consortium", "one centre", "CSV"))):
            runtime, client = _app(service, url, **overrides)
            try:
                name = path.rsplit("/", 1)[1]
                bare_ms = _bare(url, BARE[bare], start, end)
                extras = {"consortium": {}, "computed now": {}, "one centre": {"center": "C7"},
                          "CSV": {"format": "csv"}}
                for label in labels:
                    query = {**params, **extras[label]}

                    def ask(c: Any = client, path: str = path, query: dict[str, str] = query) -> None:
                        r = c.get(path, params=query, headers=headers)
                        if r.status_code != 200:
                            raise RuntimeError(f"{path}: HTTP {r.status_code} {r.text[:300]}")

                    timings[f"{name}, {label}"] = (_median_ms(ask), bare_ms, label)
                if name == "refills" and "bare_overdue_percentiles_ms" not in figures:
                    figures["bare_refill_counts_by_a_scan_ms"] = _bare(
                        url, BARE["refill counts by a scan"], start, end)
                    figures["bare_overdue_percentiles_ms"] = _bare(
                        url, BARE["overdue percentiles"], start, end)
            finally:
                client.close()
                runtime.engine.dispose()
    figures["ms"] = {k: {"report_ms": v[0], "bare_ms": v[1]} for k, v in timings.items()}
    figures["table"] = [
        {"measure": f"`GET /v1/reports/{k.split(',')[0]}` ({k.split(', ')[1]}"
                    f"{_served(k)}), {refills:,} refills, {PUMPS:,} pumps, {CENTERS} centres",
         "ours": f"{ours:.0f} ms", "baseline": f"{bare_ms:.0f} ms (its main aggregate alone, "
                                               "bare SQL)",
         "ratio": f"{ours / bare_ms:.1f}×" if bare_ms else "-", "aim": "< 1 s",
         "met": "yes" if ours < 1000 else "no"}
        for k, (ours, bare_ms, _) in timings.items()]
    return figures


def main() -> None:
    """Command line: --refills N (default 1,000,000)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--refills", type=int, default=1_000_000)
    args = parser.parse_args()
    import json
    import logging

    logging.disable(logging.INFO)
    print(json.dumps(run(args.refills), indent=2))


if __name__ == "__main__":
    main()
