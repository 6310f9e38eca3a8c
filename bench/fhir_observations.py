"""The FHIR Observation search pages in constant time (issue 21): 10,000 flow observations of one
patient on PostgreSQL, among 30,000 of other patients, paged `_count=50` from the first page to
the last by following the `next` links (keyset on (performed_at, id)).

Times each page through the scheduling app in-process (its ASGI app under a TestClient: the
whole request, token check to Bundle, without a socket), and reports the median per page at the
start, the middle and the end of the walk. Baseline from the same database: the same pages read
by SQL with OFFSET (what paging by position would cost at those depths).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import insert, text

from bench._infra import database
from services.scheduling import app as scheduling_app
from services.scheduling.models import Refill
from shared.auth import mint_token
from shared.db import make_engine
from shared.messaging.inproc import InProcessBus
from shared.migrations import upgrade
from shared.settings import DEV_JWT_SECRET, Settings

START = datetime(2020, 1, 1, tzinfo=UTC)
PATIENT, PUMP = "MRN-BENCH", "SN-BENCH"
PAGE = 50
WINDOW = 10  # pages timed at each depth
ROUNDS = 5  # times each of them


def refill_rows(count: int, *, mrn: str, serial: str, seed: int = 21,
                per_instant: int = 3) -> Iterator[dict[str, Any]]:
    """`count` refills that measured a flow, `per_instant` of them at each time (so the keyset's
    second column decides their order), with random ids (not in time order)."""
    rng = random.Random(seed)
    for i in range(count):
        deviation = rng.uniform(-30, 30)
        yield {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "pump_serial": serial, "patient_mrn": mrn, "center": "C1", "therapy_id": None,
            "appointment_id": None, "delivery_id": None,
            "performed_at": START + timedelta(hours=i // per_instant),
            "residual_volume_ml": 2.0, "fill_volume_ml": 30.0, "fill_type": "saline",
            "notes": None, "elapsed_days": 14.0,
            "measured_flow_ml_per_day": round(1 + deviation / 100, 4),
            "expected_flow_ml_per_day": 1.0, "flow_deviation_pct": round(deviation, 2),
            "outside_window": False, "projected_empty_at": None, "next_appointment_id": None,
            "recorded_by": "bench", "created_at": START, "status": "recorded",
            "voided_by": None, "voided_at": None, "void_reason": None,
        }


def seed(engine: Any, rows: Iterator[dict[str, Any]], batch: int = 5000) -> int:
    """Insert the rows in batches; how many."""
    done, chunk = 0, []
    with engine.begin() as conn:
        for row in rows:
            chunk.append(row)
            if len(chunk) == batch:
                conn.execute(insert(Refill), chunk)
                done, chunk = done + len(chunk), []
        if chunk:
            conn.execute(insert(Refill), chunk)
            done += len(chunk)
    return done


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def run(observations: int = 10_000, others: int = 30_000) -> dict[str, Any]:
    with database("fhirobs") as url:
        upgrade("scheduling", url)
        runtime = scheduling_app.bootstrap(Settings(env="test", scheduling_database_url=url),
                                           bus=InProcessBus())
        client = TestClient(scheduling_app.create_app(runtime))
        engine = make_engine(url)
        seed(engine, refill_rows(observations, mrn=PATIENT, serial=PUMP))
        for k in range(others // 10_000 or 1):
            seed(engine, refill_rows(min(10_000, others), mrn=f"MRN-OTHER-{k}",
                                     serial=f"SN-OTHER-{k}", seed=100 + k))
        with engine.begin() as conn:
            conn.execute(text("ANALYZE refills"))
        headers = {"Authorization": "Bearer " + mint_token("bench", ["nurse"], secret=DEV_JWT_SECRET)}
        url_next: str | None = f"/fhir/R4/Observation?patient=Patient/{PATIENT}&_count={PAGE}"
        urls: list[str] = []
        seen = 0
        while url_next is not None:  # the walk: every page once, by the next links
            urls.append(url_next)
            r = client.get(url_next, headers=headers)
            assert r.status_code == 200, r.text
            bundle = r.json()
            seen += len(bundle["entry"])
            url_next = next((link["url"] for link in bundle["link"]
                             if link["relation"] == "next"), None)
        assert seen == observations, (seen, observations)
        pages = len(urls)
        depths = {"start": 0, "middle": pages // 2 - WINDOW // 2, "end": pages - WINDOW}
        with engine.connect() as conn:
            keys = conn.execute(text(
                "SELECT performed_at, id FROM refills WHERE patient_mrn = :mrn AND "
                "measured_flow_ml_per_day IS NOT NULL ORDER BY performed_at, id"),
                {"mrn": PATIENT}).fetchall()
        samples: dict[str, dict[str, list[float]]] = {
            kind: {label: [] for label in depths} for kind in ("http", "keyset_sql", "offset_sql")}
        # the depths interleaved, round after round, so that the machine's load falls on each alike
        with engine.connect() as conn:
            for _ in range(ROUNDS):
                for label, first in depths.items():
                    for p in range(first, first + WINDOW):
                        started = time.perf_counter()
                        assert client.get(urls[p], headers=headers).status_code == 200
                        samples["http"][label].append(time.perf_counter() - started)
                        started = time.perf_counter()
                        conn.execute(text(
                            "SELECT * FROM refills WHERE patient_mrn = :mrn AND "
                            "measured_flow_ml_per_day IS NOT NULL AND (performed_at, id) > (:at, :id) "
                            "ORDER BY performed_at, id LIMIT :n"),
                            {"mrn": PATIENT, "at": keys[max(p * PAGE - 1, 0)][0],
                             "id": keys[max(p * PAGE - 1, 0)][1] if p else "", "n": PAGE + 1}
                        ).fetchall()
                        samples["keyset_sql"][label].append(time.perf_counter() - started)
                        started = time.perf_counter()
                        conn.execute(text(
                            "SELECT * FROM refills WHERE patient_mrn = :mrn AND "
                            "measured_flow_ml_per_day IS NOT NULL ORDER BY performed_at, id "
                            "OFFSET :skip LIMIT :n"), {"mrn": PATIENT, "skip": p * PAGE, "n": PAGE + 1}
                        ).fetchall()
                        samples["offset_sql"][label].append(time.perf_counter() - started)
        runtime.engine.dispose()
        engine.dispose()
    medians = {kind: {label: _median_ms(v) for label, v in by_depth.items()}
               for kind, by_depth in samples.items()}
    keyset, offset_ms, keyset_sql = medians["http"], medians["offset_sql"], medians["keyset_sql"]
    ratio = keyset["end"] / keyset["start"]
    return {
        "observations": observations, "other_patients_rows": others, "page_size": PAGE,
        "pages": pages, "rounds": ROUNDS, "keyset_page_ms_median": keyset,
        "keyset_sql_ms_median": keyset_sql, "offset_sql_ms_median": offset_ms,
        "end_to_start_ratio": round(ratio, 2),
        "table": [
            {"measure": f"Observation search page ({PAGE} of {observations:,}), {label}",
             "ours": f"{keyset[label]} ms (its SQL alone {keyset_sql[label]} ms)",
             "baseline": f"{offset_ms[label]} ms (the same page by SQL OFFSET, query alone)",
             "ratio": "-", "aim": "flat" if label != "start" else "-",
             "met": ("yes" if keyset[label] < 1.5 * keyset["start"] else "no")
             if label != "start" else "-"}
            for label in ("start", "middle", "end")],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--observations", type=int, default=10_000)
    parser.add_argument("--others", type=int, default=30_000)
    args = parser.parse_args()
    print(json.dumps(run(args.observations, args.others), indent=2))


if __name__ == "__main__":
    main()
