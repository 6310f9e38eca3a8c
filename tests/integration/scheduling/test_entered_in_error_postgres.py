"""Refills entered in error on PostgreSQL: the new revision's schema (a voided refill gives its
appointment back), and races: the same void sent at once is applied once; a void racing the
next refill of the pump leaves one consistent story, never two."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from httpx import Response
from sqlalchemy import text

from shared.clock import MovableClock
from shared.events import EventType
from tests.factories import T0
from tests.helpers import Harness, start, wait_until
from tests.helpers import test_settings as settings_for
from tests.unit.scheduling.scheduling_support import NURSE, implant, outbox, patient, therapy


def _pump_with_two_fills(tmp_path: Path, pg_database: Callable[[str], str]) -> tuple[Harness, dict[str, Any]]:
    h, bus = start("scheduling", settings_for(tmp_path, scheduling_database_url=pg_database("scheduling")),
                   MovableClock(T0))
    patient(h)
    implant(h, bus)
    therapy(h, start_on="2026-11-02", regimen="saline_maintenance")
    for days, residual in ((20, 0), (6, 9)):
        r = h.client.post("/v1/refills", headers=NURSE, json={
            "pump_serial": "SN1", "performed_at": (T0 - timedelta(days=days)).isoformat(),
            "residual_volume_ml": residual, "fill_volume_ml": 30, "fill_type": "saline"})
        assert r.status_code == 201, r.text
    return h, r.json()


def _at_once(calls: list[Callable[[], Response]]) -> list[Response]:
    answers: list[Response] = []
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Response]) -> None:
        barrier.wait()
        answers.append(call())

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_the_same_void_sent_at_once_is_applied_once(tmp_path: Path,
                                                   pg_database: Callable[[str], str]) -> None:
    h, latest = _pump_with_two_fills(tmp_path, pg_database)
    url = f"/v1/refills/{latest['id']}/entered-in-error"
    answers: list[Response] = []
    # the pump's row held by another transaction: every void reads the refill still recorded
    # and then waits on a lock, so that all four are inside at once when it is let go
    with h.runtime.engine.connect() as holder, h.runtime.engine.connect() as watcher:
        holder.execute(text("SELECT 1 FROM implanted_pumps WHERE serial_number = 'SN1' FOR UPDATE"))
        threads = [threading.Thread(target=lambda: answers.append(h.client.post(
            url, json={"reason": "duplicate entry"}, headers=NURSE))) for _ in range(4)]
        for t in threads:
            t.start()

        def waiting() -> int:
            try:  # pg_stat_activity is a snapshot per transaction: a new one for each look
                return int(watcher.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'")).scalar_one())
            finally:
                watcher.rollback()

        wait_until(lambda: waiting() >= 4, what="the four voids waiting on a lock", timeout_s=20)
        holder.rollback()
        for t in threads:
            t.join()
    assert sorted(r.status_code for r in answers) == [200, 409, 409, 409], [r.text for r in answers]
    assert all("already entered in error" in r.json()["detail"]
               for r in answers if r.status_code == 409)
    assert len(outbox(h, EventType.REFILL_VOIDED)) == 1
    # the appointment it completed is open once more, and may be completed again on PostgreSQL's
    # partial unique index (a voided refill keeps its appointment_id for the audit)
    r = h.client.post("/v1/refills", headers=NURSE, json={
        "pump_serial": "SN1", "performed_at": (T0 - timedelta(days=6)).isoformat(),
        "residual_volume_ml": 16, "fill_volume_ml": 30, "fill_type": "saline",
        "appointment_id": latest["appointment_id"]})
    assert r.status_code == 201, r.text
    assert r.json()["measured_flow_ml_per_day"] == 1.0


def test_a_void_racing_the_next_refill_leaves_one_story(tmp_path: Path,
                                                        pg_database: Callable[[str], str]) -> None:
    h, latest = _pump_with_two_fills(tmp_path, pg_database)
    nxt = latest["next_appointment"]["id"]
    answers = _at_once([
        lambda: h.client.post(f"/v1/refills/{latest['id']}/entered-in-error",
                              json={"reason": "wrong residual"}, headers=NURSE),
        lambda: h.client.post("/v1/refills", headers=NURSE, json={
            "pump_serial": "SN1", "performed_at": T0.isoformat(), "residual_volume_ml": 21,
            "fill_volume_ml": 30, "fill_type": "saline", "appointment_id": nxt}),
    ])
    codes = sorted(r.status_code for r in answers)
    assert codes in ([200, 409], [201, 409]), [r.text for r in answers]
    refills = h.client.get("/v1/refills", params={"pump_serial": "SN1"}, headers=NURSE).json()
    statuses = [r["status"] for r in refills["items"]]
    appt = h.client.get(f"/v1/appointments/{nxt}", headers=NURSE).json()
    if 200 in codes:  # the void won: the next refill found its appointment cancelled
        assert statuses == ["entered_in_error", "recorded"] and appt["status"] == "cancelled"
        assert len(outbox(h, EventType.REFILL_VOIDED)) == 1
    else:  # the refill won: the voided one is no longer the latest
        assert statuses == ["recorded"] * 3 and appt["status"] == "completed"
        assert outbox(h, EventType.REFILL_VOIDED) == []
