"""A patient's transfer (scheduling's `patient.center_changed`): the patient's open alerts move
to the new centre, whose on-call is paged (now for a firing alert, later on escalation); the old
centre's unsent pages are cancelled and its users no longer see them; closed alerts stay; a
repeat changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.alerts import paging
from shared.events import EventType
from tests.factories import (
    flow_recorded,
    oncall_body,
    patient_center_changed,
    refill_overdue,
    reservoir_near_empty,
)
from tests.helpers import Harness, auth, emit, start
from tests.helpers import test_settings as settings_for

ONCALL = auth("oncall", sub="oc")
NORTH_NURSE = auth("nurse", sub="n-nurse", centers=["north"])
SOUTH_NURSE = auth("nurse", sub="s-nurse", centers=["south"])


def _alerts(h: Harness, headers: dict[str, str] = ONCALL, **params: Any) -> list[dict[str, Any]]:
    r = h.client.get("/v1/alerts", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def _pages(h: Harness, alert_id: str) -> list[tuple[int, str, str]]:
    r = h.client.get("/v1/notifications", params={"alert_id": alert_id}, headers=ONCALL)
    return sorted((n["level"], n["recipient"], n["status"]) for n in r.json()["items"])


def _ready(tmp_path: Path) -> tuple[Harness, Any, dict[str, dict[str, Any]]]:
    """North and south on call; MRN-1 at north with a critical overdue refill (its page not yet
    sent), an acknowledged flow warning and a resolved flow alert."""
    h, bus = start("alerts", settings_for(tmp_path))
    for center, who in (("north", "nora"), ("south", "sam")):
        r = h.client.put(f"/v1/oncall/{center}", headers=ONCALL, json=oncall_body(
            [(f"{who}-1", "log", f"{who}-1")], [(f"{who}-2", "log", f"{who}-2")]))
        assert r.status_code == 200, r.text
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=30.0, refill_id="rf-0"))
    [old_flow] = _alerts(h, kind="flow_abnormal")
    h.client.post(f"/v1/alerts/{old_flow['id']}/resolve", json={"resolution": "re-measured"},
                  headers=ONCALL)
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=18.0, refill_id="rf-1"))
    paging.sweep_once(h.runtime)
    [flow] = _alerts(h, kind="flow_abnormal", status="firing")
    assert h.client.post(f"/v1/alerts/{flow['id']}/ack", json={},
                         headers=ONCALL).status_code == 200
    emit(h, bus, EventType.REFILL_OVERDUE, refill_overdue(hours_to_empty=30.0))
    [overdue] = _alerts(h, kind="refill_overdue")
    assert overdue["severity"] == "critical" and overdue["center"] == "north"
    assert _pages(h, overdue["id"]) == [(1, "nora-1", "pending")]
    return h, bus, {"flow": flow, "old_flow": old_flow, "overdue": overdue}


def test_open_alerts_move_and_page_the_new_centre(tmp_path: Path) -> None:
    h, bus, alerts = _ready(tmp_path)
    emit(h, bus, EventType.PATIENT_CENTER_CHANGED, patient_center_changed("south"))

    centres = {a["id"]: (a["center"], a["status"]) for a in _alerts(h)}
    assert centres == {alerts["overdue"]["id"]: ("south", "firing"),
                       alerts["flow"]["id"]: ("south", "acknowledged"),
                       alerts["old_flow"]["id"]: ("north", "resolved")}  # closed: stays
    # the old centre's unsent page is withdrawn; the new centre's level 1 is paged instead
    overdue = alerts["overdue"]["id"]
    assert _pages(h, overdue) == [(1, "nora-1", "cancelled"), (1, "sam-1", "pending")]
    paging.sweep_once(h.runtime)
    assert _pages(h, overdue) == [(1, "nora-1", "cancelled"), (1, "sam-1", "sent")]
    # an acknowledged alert is not paged again now (its re-notify will page the new centre)
    assert [p[1] for p in _pages(h, alerts["flow"]["id"])] == ["nora-1"]
    timeline = h.client.get(f"/v1/alerts/{overdue}", headers=ONCALL).json()["timeline"]
    assert {"from_center": "north", "center": "south", "changed_by": "nina"} in [
        e["details"] for e in timeline if e["action"] == "center_changed"]

    # the new centre's users see the open alerts, the old centre's no longer do
    assert {a["id"] for a in _alerts(h, SOUTH_NURSE)} == {overdue, alerts["flow"]["id"]}
    assert [a["id"] for a in _alerts(h, NORTH_NURSE)] == [alerts["old_flow"]["id"]]
    assert h.client.get(f"/v1/alerts/{overdue}", headers=NORTH_NURSE).status_code == 404

    # unacknowledged, it escalates to the new centre's level 2
    h.clock.advance(seconds=901)  # type: ignore[attr-defined]
    paging.sweep_once(h.runtime)
    assert (2, "sam-2", "sent") in _pages(h, overdue)
    assert all(not p[1].startswith("nora") or p[2] == "cancelled" for p in _pages(h, overdue))


def test_a_repeated_transfer_event_changes_nothing(tmp_path: Path) -> None:
    h, bus, alerts = _ready(tmp_path)
    emit(h, bus, EventType.PATIENT_CENTER_CHANGED, patient_center_changed("south"))
    before = (_alerts(h), _pages(h, alerts["overdue"]["id"]))
    # the same fact again (a new event id: the inbox does not catch it)
    emit(h, bus, EventType.PATIENT_CENTER_CHANGED, patient_center_changed("south"))
    assert (_alerts(h), _pages(h, alerts["overdue"]["id"])) == before


def test_another_patient_s_alerts_stay(tmp_path: Path) -> None:
    h, bus, alerts = _ready(tmp_path)
    emit(h, bus, EventType.PATIENT_CENTER_CHANGED,
         patient_center_changed("south", mrn="MRN-OTHER", serial="SN-OTHER"))
    assert {a["center"] for a in _alerts(h)} == {"north"}
    assert _pages(h, alerts["overdue"]["id"]) == [(1, "nora-1", "pending")]


def test_transfers_heard_out_of_order_end_at_the_latest(tmp_path: Path) -> None:
    h, bus, alerts = _ready(tmp_path)
    emit(h, bus, EventType.PATIENT_CENTER_CHANGED,
         patient_center_changed("east", from_center="south", minutes=10))
    emit(h, bus, EventType.PATIENT_CENTER_CHANGED, patient_center_changed("south", minutes=5))
    assert {a["id"]: a["center"] for a in _alerts(h, status="firing")} == {
        alerts["overdue"]["id"]: "east"}
    assert {a["center"] for a in _alerts(h, status="acknowledged")} == {"east"}


def test_a_fact_announced_before_the_transfer_and_heard_after_it_is_raised_at_the_new_centre(
        tmp_path: Path) -> None:
    h, bus, _ = _ready(tmp_path)
    emit(h, bus, EventType.PATIENT_CENTER_CHANGED, patient_center_changed("south"))
    # the sweep's near-empty fact, written before the move, still names north
    emit(h, bus, EventType.RESERVOIR_NEAR_EMPTY, reservoir_near_empty("appt-1", center="north"))
    [near_empty] = _alerts(h, kind="reservoir_near_empty")
    assert near_empty["center"] == "south"
    assert _pages(h, near_empty["id"]) == [(1, "sam-1", "pending")]
    # another patient's facts of north stay at north
    emit(h, bus, EventType.RESERVOIR_NEAR_EMPTY,
         reservoir_near_empty("appt-9", "SN-9", mrn="MRN-9", center="north"))
    [other] = _alerts(h, kind="reservoir_near_empty", patient_mrn="MRN-9")
    assert other["center"] == "north"
