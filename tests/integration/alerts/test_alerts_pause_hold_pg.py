"""A paused therapy holds its pump's warnings, on PostgreSQL: recorded, not paged; when the therapy
resumes (or stops) every warning it held that is still firing is paged then, once; a critical
pages through a pause; repeated and late events change nothing; a silence and a pause that hold
the same alert page it once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared.clock import MovableClock
from shared.contracts.vocabulary import TherapyStatus
from shared.events import EventType
from shared.messaging.inproc import InProcessBus
from tests.factories import T0, flow_recorded, therapy_status_changed
from tests.helpers import Harness, emit
from tests.integration.alerts.alerts_testkit import ONCALL
from tests.integration.alerts.test_alerts_api import clock
from tests.integration.alerts.test_alerts_paging_loop_pg import (
    actions,
    member,
    oncall,
    pages_of,
    put,
    silence,
    sweep,
    the_alert,
)
from tests.integration.alerts.test_alerts_pg import pg_alerts

PAUSED, ACTIVE, STOPPED = TherapyStatus.PAUSED, TherapyStatus.ACTIVE, TherapyStatus.STOPPED
WARNING_PCT, CRITICAL_PCT = 20, 40  # the default bands: 15 % warning, 25 % critical


@pytest.fixture
def h(tmp_path, pg_database: Callable[[str], str]) -> Iterator[Harness]:
    """Alerts on PostgreSQL (its in-process bus: `h.runtime.bus`), north's on-call set."""
    harness = pg_alerts(tmp_path, pg_database("alerts"), MovableClock(T0), InProcessBus())
    put(harness, "north", oncall([member("ann", "log", "ann")]))
    yield harness
    harness.runtime.engine.dispose()


def flow(h: Harness, serial: str, deviation_pct: float, **extra: Any) -> None:
    emit(h, h.runtime.bus, EventType.FLOW_RECORDED, flow_recorded(serial, deviation_pct, **extra))


def therapy(h: Harness, status: str, serial: str = "SN1", *, minutes: float,
            therapy_id: str = "th-1") -> None:
    emit(h, h.runtime.bus, EventType.THERAPY_STATUS_CHANGED,
         therapy_status_changed(status, serial, therapy_id=therapy_id, minutes=minutes,
                                reason="neutropenia" if status == PAUSED else None),
         subject=serial)


def test_a_pause_holds_its_pumps_warnings_and_its_resume_pages_them_once(
        h: Harness) -> None:
    therapy(h, PAUSED, minutes=-30)
    flow(h, "SN1", WARNING_PCT)
    flow(h, "SN2", WARNING_PCT)  # another pump
    held, other = the_alert(h, pump_serial="SN1"), the_alert(h, pump_serial="SN2")
    assert held["severity"] == "warning" and held["held_by_therapy"] == "th-1"
    assert other["held_by_therapy"] is None
    sweep(h)
    assert [len(pages_of(h, a["id"])) for a in (held, other)] == [0, 1]
    assert actions(h, held["id"]) == ["raised", "held_by_pause"]

    clock(h).advance(hours=1)
    therapy(h, ACTIVE, minutes=60)
    assert the_alert(h, pump_serial="SN1")["held_by_therapy"] is None
    sweep(h)
    assert len(pages_of(h, held["id"])) == 1
    assert actions(h, held["id"])[-3:] == ["pause_ended", "page_planned", "paged"]

    # the resume again (a producer's retry: another event id): nothing more is paged
    therapy(h, ACTIVE, minutes=60)
    sweep(h)
    assert len(pages_of(h, held["id"])) == 1
    # the pause arriving late, after its resume, holds nothing: a new warning pages
    h.client.post(f"/v1/alerts/{held['id']}/resolve", headers=ONCALL, json={"resolution": "ok"})
    therapy(h, PAUSED, minutes=-30)
    flow(h, "SN1", WARNING_PCT, refill_id="r-2")
    again = the_alert(h, pump_serial="SN1", status="firing")
    assert again["id"] != held["id"] and again["held_by_therapy"] is None
    sweep(h)
    assert [len(pages_of(h, a["id"])) for a in (held, again)] == [1, 1]


def test_a_critical_pages_through_a_pause_and_a_held_warning_that_rises_pages_once(
        h: Harness) -> None:
    therapy(h, PAUSED, "SN1", minutes=0, therapy_id="th-1")
    therapy(h, PAUSED, "SN2", minutes=0, therapy_id="th-2")
    flow(h, "SN1", CRITICAL_PCT)
    flow(h, "SN2", WARNING_PCT)
    critical, warning = the_alert(h, pump_serial="SN1"), the_alert(h, pump_serial="SN2")
    assert critical["held_by_therapy"] is None and warning["held_by_therapy"] == "th-2"
    # the held warning rises to critical: it pages now, and is no longer held
    flow(h, "SN2", CRITICAL_PCT, refill_id="r-2")
    assert the_alert(h, pump_serial="SN2")["held_by_therapy"] is None
    sweep(h)
    assert [len(pages_of(h, a["id"])) for a in (critical, warning)] == [1, 1]
    therapy(h, STOPPED, "SN2", minutes=10, therapy_id="th-2")
    sweep(h)
    assert len(pages_of(h, warning["id"])) == 1


def test_a_stop_releases_only_what_is_still_firing(h: Harness) -> None:
    therapy(h, PAUSED, "SN1", minutes=0)
    flow(h, "SN1", WARNING_PCT)
    flow(h, "SN2", WARNING_PCT)
    therapy(h, PAUSED, "SN2", minutes=0, therapy_id="th-2")
    # SN2's warning was raised before its pause: it paged; SN1's is resolved while held
    sn1 = the_alert(h, pump_serial="SN1")
    h.client.post(f"/v1/alerts/{sn1['id']}/resolve", headers=ONCALL, json={"resolution": "ok"})
    therapy(h, STOPPED, "SN1", minutes=5)
    sweep(h)
    assert len(pages_of(h, sn1["id"])) == 0
    assert "pause_ended" not in actions(h, sn1["id"])
    assert the_alert(h, pump_serial="SN1")["held_by_therapy"] is None
    sn2 = the_alert(h, pump_serial="SN2")
    assert sn2["held_by_therapy"] is None and len(pages_of(h, sn2["id"])) == 1


def test_a_silence_and_a_pause_on_one_alert_page_it_once_whichever_ends_first(
        h: Harness) -> None:
    silence(h, "s1", "2026-11-02T09:00:00Z", pump_serial="SN1")
    silence(h, "s2", "2026-11-02T09:00:00Z", pump_serial="SN2")
    therapy(h, PAUSED, "SN1", minutes=0, therapy_id="th-1")
    therapy(h, PAUSED, "SN2", minutes=0, therapy_id="th-2")
    flow(h, "SN1", WARNING_PCT)
    flow(h, "SN2", WARNING_PCT)
    sn1, sn2 = the_alert(h, pump_serial="SN1"), the_alert(h, pump_serial="SN2")
    assert sn1["silenced_by"] and sn1["held_by_therapy"] is None  # the silence holds it
    # SN1: its pause ends first (nothing of the pause's to page), then the silence: paged once
    therapy(h, ACTIVE, "SN1", minutes=30, therapy_id="th-1")
    sweep(h)
    assert len(pages_of(h, sn1["id"])) == 0
    clock(h).advance(hours=1, seconds=1)
    # the silences end together; SN2's pause still holds it, SN1 pages
    assert sweep(h)["released"] == 2
    assert the_alert(h, pump_serial="SN2")["held_by_therapy"] == "th-2"
    assert [len(pages_of(h, a["id"])) for a in (sn1, sn2)] == [1, 0]
    therapy(h, ACTIVE, "SN2", minutes=90, therapy_id="th-2")
    sweep(h)
    sweep(h)
    assert [len(pages_of(h, a["id"])) for a in (sn1, sn2)] == [1, 1]
    assert actions(h, sn2["id"]).count("page_planned") == 1
