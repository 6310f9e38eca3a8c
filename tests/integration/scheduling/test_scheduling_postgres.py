"""Scheduling on PostgreSQL: two workers sweeping at once announce each fact exactly once, and of
two concurrent refills for one appointment one wins."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from httpx import Response
from sqlalchemy import text

from services.scheduling.jobs import sweep
from shared.clock import MovableClock
from shared.events import EventType
from shared.messaging.inproc import InProcessBus
from tests.factories import T0
from tests.helpers import Harness, start
from tests.helpers import test_settings as settings_for
from tests.unit.scheduling.scheduling_support import (
    NURSE,
    implant,
    outbox,
    patient,
    therapy,
    worklist,
)

N = 40


def test_two_workers_announce_each_fact_once(tmp_path: Path,
                                             pg_database: Callable[[str], str]) -> None:
    url = pg_database("scheduling")
    settings = settings_for(tmp_path, scheduling_database_url=url)
    clock = MovableClock(T0)
    a, bus = start("scheduling", settings, clock)
    b, _ = start("scheduling", settings, clock, InProcessBus())
    for i in range(N):
        patient(a, f"M{i}")
        implant(a, bus, f"S{i}", f"M{i}")
        # every other one chemo: orders at lead time too
        therapy(a, f"M{i}", f"S{i}", start_on=f"2026-11-{10 + i % 3:02d}",
                regimen="fudr_alternating" if i % 2 else "saline_maintenance")
    before = len(outbox(a, EventType.ORDER_REQUESTED))
    errors: list[BaseException] = []

    def run(h: Harness) -> None:
        try:
            facts = sweep(h.runtime)
            assert facts["ok"], facts
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    for step in (timedelta(days=5), timedelta(days=1), timedelta(days=1), timedelta(days=1),
                 timedelta(days=3)):
        clock.advance(step)
        threads = [threading.Thread(target=run, args=(h,)) for h in (a, b, a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
    for event_type in (EventType.REFILL_DUE_SOON, EventType.REFILL_OVERDUE):
        ids = Counter(e["data"]["id"] for e in outbox(a, event_type))
        assert len(ids) == N and set(ids.values()) == {1}, (event_type, ids)
    orders = Counter(e["data"]["appointment_id"] for e in outbox(a, EventType.ORDER_REQUESTED))
    assert len(orders) == N // 2 and set(orders.values()) == {1}
    assert before < len(orders)
    late = Counter(e["data"]["id"] for e in outbox(a, EventType.DELIVERY_LATE))
    assert len(late) == N // 2 and set(late.values()) == {1}
    assert outbox(a, EventType.RESERVOIR_NEAR_EMPTY) == []  # nothing filled yet: no projection
    assert len(outbox(a, EventType.SWEEP_COMPLETED)) == 20


def _pump_in_therapy(tmp_path: Path, pg_database: Callable[[str], str]) -> Harness:
    """Scheduling on PostgreSQL with pump SN1 implanted and a saline therapy running."""
    h, bus = start("scheduling", settings_for(tmp_path, scheduling_database_url=pg_database("scheduling")),
                   MovableClock(T0))
    patient(h)
    implant(h, bus)
    therapy(h, start_on="2026-11-02", regimen="saline_maintenance")
    return h


def _post_refills_at_once(h: Harness, body: dict[str, Any], times: int = 4) -> list[Response]:
    """POST the same refill from `times` threads released together."""
    answers: list[Response] = []
    barrier = threading.Barrier(times)

    def post() -> None:
        barrier.wait()
        answers.append(h.client.post("/v1/refills", json=body, headers=NURSE))

    threads = [threading.Thread(target=post) for _ in range(times)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_concurrent_refills_one_wins(tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    h = _pump_in_therapy(tmp_path, pg_database)
    [appt] = worklist(h)
    answers = _post_refills_at_once(h, {
        "pump_serial": "SN1", "performed_at": T0.isoformat(), "residual_volume_ml": 0,
        "fill_volume_ml": 30, "fill_type": "saline", "appointment_id": appt["id"]})
    assert sorted(r.status_code for r in answers) == [201, 409, 409, 409]
    assert len(outbox(h, EventType.REFILL_COMPLETED)) == 1
    assert [a["status"] for a in worklist(h)] == ["completed", "scheduled"]


def test_concurrent_refills_without_an_open_appointment_do_not_both_go_through(
        tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    """With no scheduled appointment to claim, the pump's row serializes the refills: the same
    refill sent four times at once is recorded once; the others are told it is not after the
    previous fill."""
    h = _pump_in_therapy(tmp_path, pg_database)
    with h.runtime.engine.begin() as conn:  # e.g. its appointment was cancelled
        conn.execute(text("UPDATE appointments SET status = 'cancelled'"))
    answers = _post_refills_at_once(h, {
        "pump_serial": "SN1", "performed_at": T0.isoformat(), "residual_volume_ml": 0,
        "fill_volume_ml": 30, "fill_type": "saline"})
    assert sorted(r.status_code for r in answers) == [201, 422, 422, 422], [r.text for r in answers]
    assert all("not after the previous fill" in r.text for r in answers if r.status_code == 422)
    assert len(outbox(h, EventType.REFILL_COMPLETED)) == 1
