"""Scheduling's answers carry its judgements as of the answer (CONTRACT.md, Scheduling, "Added"):
an appointment's `urgency` and `near_empty`, a refill's and a flow reading's `flow_abnormal`
with the band it was judged by. The dashboard shows them and judges nothing itself."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from shared.events import EventType
from tests.factories import T0
from tests.helpers import start
from tests.helpers import test_settings as settings_for
from tests.unit.scheduling.scheduling_support import NURSE, implant, outbox, patient, therapy, worklist


def _appointment(h: Any, appointment_id: str) -> dict[str, Any]:
    r = h.client.get(f"/v1/appointments/{appointment_id}", headers=NURSE)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_an_appointments_urgency_follows_the_clock_and_the_due_soon_notice(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path, due_soon_hours=48))
    patient(h)
    implant(h, bus)
    therapy(h, start_on="2026-11-10", regimen="saline_maintenance")  # due 2026-11-10 00:00 UTC
    [appt] = worklist(h)
    seen = []
    # T0 is 2026-11-02 08:00: 184 h before, 40 h before, at the due time, an hour after
    for advance_hours in (0, 144, 40, 1):
        h.clock.advance(hours=advance_hours)  # type: ignore[attr-defined]
        [listed] = worklist(h)
        assert _appointment(h, appt["id"])["urgency"] == listed["urgency"]
        seen.append(listed["urgency"])
    assert seen == ["later", "due_soon", "due_today", "overdue"]
    assert worklist(h)[0]["near_empty"] is False  # a first fill projects no empty time yet


def test_a_shorter_due_soon_notice_is_scheduling_s_own_setting(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path, due_soon_hours=24))
    patient(h)
    implant(h, bus)
    therapy(h, start_on="2026-11-04", regimen="saline_maintenance")  # 40 h after T0
    assert worklist(h)[0]["urgency"] == "later"


def test_a_fast_pump_is_judged_abnormal_and_near_empty(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path, near_empty_hours=72, flow_warning_pct=15))
    patient(h)
    implant(h, bus, labeled_flow_ml_per_day=1.0)
    therapy(h, start_on="2026-11-02", regimen="saline_maintenance")
    body = {"pump_serial": "SN1", "fill_type": "saline"}
    first = h.client.post("/v1/refills", headers=NURSE, json={
        **body, "performed_at": T0.isoformat(), "residual_volume_ml": 0, "fill_volume_ml": 30})
    assert first.status_code == 201, first.text
    assert first.json()["flow_abnormal"] is None  # nothing measured at a first fill
    assert first.json()["flow_warning_pct"] == 15
    h.clock.advance(days=14)  # type: ignore[attr-defined]
    # (30 − 2) mL in 14 days: 2 mL/day against 1 labeled, +100 %; 30 mL last 15 days
    second = h.client.post("/v1/refills", headers=NURSE, json={
        **body, "performed_at": (T0 + timedelta(days=14)).isoformat(), "residual_volume_ml": 2,
        "fill_volume_ml": 30})
    assert second.status_code == 201, second.text
    got = second.json()
    assert got["flow_deviation_pct"] == 100.0 and got["flow_abnormal"] is True
    nxt = got["next_appointment"]
    assert nxt["due_basis"] == "projected_empty" and nxt["near_empty"] is False
    assert nxt["urgency"] == "later"
    [reading] = h.client.get("/v1/pumps/SN1/flow-readings", headers=NURSE).json()["items"]
    assert reading["flow_abnormal"] is True and reading["flow_warning_pct"] == 15
    refill = h.client.get(f"/v1/refills/{got['id']}", headers=NURSE).json()
    assert refill["flow_abnormal"] is True
    assert refill["next_appointment"]["id"] == nxt["id"]
    # judgements of the answer, as of its time: not facts the events carry
    completed = outbox(h, EventType.REFILL_COMPLETED)[-1]["data"]
    assert completed["id"] == got["id"] and "flow_abnormal" not in completed
    assert "flow_warning_pct" not in completed
    assert "urgency" not in completed["next_appointment"]
    assert "near_empty" not in completed["next_appointment"]
    h.clock.advance(days=12, hours=1)  # 71 h before the pump runs dry, an hour past due
    [listed] = worklist(h, status="scheduled")
    assert listed["id"] == nxt["id"]
    assert listed["near_empty"] is True and listed["urgency"] == "overdue"


def test_the_band_is_scheduling_s_setting(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path, flow_warning_pct=150))
    patient(h)
    implant(h, bus, labeled_flow_ml_per_day=1.0)
    therapy(h, start_on="2026-11-02", regimen="saline_maintenance")
    body = {"pump_serial": "SN1", "fill_type": "saline"}
    h.client.post("/v1/refills", headers=NURSE, json={
        **body, "performed_at": T0.isoformat(), "residual_volume_ml": 0, "fill_volume_ml": 30})
    h.clock.advance(days=14)  # type: ignore[attr-defined]
    second = h.client.post("/v1/refills", headers=NURSE, json={
        **body, "performed_at": (T0 + timedelta(days=14)).isoformat(), "residual_volume_ml": 2,
        "fill_volume_ml": 30}).json()
    assert second["flow_deviation_pct"] == 100.0
    assert second["flow_abnormal"] is False and second["flow_warning_pct"] == 150
    listed = h.client.get("/v1/refills", params={"pump_serial": "SN1"}, headers=NURSE).json()["items"]
    assert [r["flow_abnormal"] for r in listed] == [False, None]  # newest first
