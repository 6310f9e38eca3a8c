"""Per-centre settings (CONTRACT.md, Centre settings): each value falls back to the system
default with its source, an admin changes them (audited, announced), a wrong value changes
nothing, and the judgements follow a change without a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from services.scheduling.centers import DEFAULTS, effective_values, threshold_problems
from services.scheduling.jobs import announce_due_soon
from services.scheduling.models import CenterSettings
from services.scheduling.urgency import urgency_of
from shared.events import EventType
from tests.factories import T0
from tests.helpers import Harness, auth, start
from tests.helpers import test_settings as settings_for
from tests.unit.scheduling.scheduling_support import implant, outbox, patient, therapy, worklist

ADMIN = auth("admin", sub="ada-admin")
NURSE = auth("nurse", sub="nina")
DEFAULTS_NOW = {"time_zone": "UTC", "refill_interval_days": 14, "refill_window_days": 4,
                "due_soon_hours": 48, "near_empty_hours": 72, "flow_warning_pct": 15.0,
                "flow_critical_pct": 25.0, "escalation_delay_seconds": 900,
                "ack_timeout_seconds": 14400}


# ---- the fallback (pure) -------------------------------------------------------------------

def test_a_value_the_centre_set_wins_and_the_others_name_their_default_and_source() -> None:
    values = effective_values({"due_soon_hours": 24}, DEFAULTS_NOW)
    assert values["due_soon_hours"] == {
        "value": 24, "source": "center", "default": 48, "default_setting": "HAI_DUE_SOON_HOURS",
        "default_source": "our choice"}
    assert values["flow_warning_pct"]["value"] == 15.0
    assert values["flow_warning_pct"]["source"] == "default"
    assert values["flow_warning_pct"]["default_setting"] == "HAI_FLOW_WARNING_PCT"
    assert "Intera" in values["flow_warning_pct"]["default_source"]
    assert set(values) == set(DEFAULTS) == set(DEFAULTS_NOW)


def test_a_zero_the_centre_set_is_its_value_not_the_default() -> None:
    assert effective_values({"refill_window_days": 0}, DEFAULTS_NOW)["refill_window_days"][
        "value"] == 0


def test_thresholds_that_do_not_fit_together_are_named() -> None:
    assert threshold_problems(DEFAULTS_NOW) == []
    fields = [f for f, _ in threshold_problems({**DEFAULTS_NOW, "flow_critical_pct": 15.0,
                                                "due_soon_hours": 24 * 15,
                                                "refill_window_days": 7})]
    assert fields == ["flow_critical_pct", "due_soon_hours", "refill_window_days"]


def test_due_today_is_the_centre_s_day() -> None:
    # T0 is 08:00 UTC on 2 Nov; 23:30 UTC that day is already 3 Nov in Sydney (UTC+11)
    due = T0.replace(hour=23, minute=30)
    assert urgency_of(due_at=due, now=T0, due_soon_hours=1) == "due_today"
    assert urgency_of(due_at=due, now=T0, due_soon_hours=1, time_zone="Australia/Sydney") == "later"


# ---- the API -------------------------------------------------------------------------------

def _get(h: Harness, center: str = "C1") -> dict[str, Any]:
    r = h.client.get(f"/v1/centers/{center}/settings", headers=NURSE)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _rows(h: Harness) -> list[CenterSettings]:
    with h.runtime.uow_factory() as uow:
        return list(uow.session.scalars(select(CenterSettings)))


def test_a_centre_never_set_shows_every_default_with_its_source(tmp_path: Path) -> None:
    h, _ = start("scheduling", settings_for(tmp_path, due_soon_hours=36))
    got = _get(h)
    assert got["version"] == 0
    assert {k: v["value"] for k, v in got["settings"].items()} == {**DEFAULTS_NOW,
                                                                   "due_soon_hours": 36}
    assert {v["source"] for v in got["settings"].values()} == {"default"}


def test_an_admin_sets_a_centre_s_values_audited_and_announced(tmp_path: Path) -> None:
    h, _ = start("scheduling", settings_for(tmp_path))
    body = {"time_zone": "Europe/Paris", "due_soon_hours": 24, "flow_warning_pct": 10}
    r = h.client.put("/v1/centers/C1/settings", json=body, headers=ADMIN)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["version"] == 1 and got["updated_by"] == "ada-admin"
    assert got["settings"]["time_zone"] == {**got["settings"]["time_zone"], "value": "Europe/Paris",
                                            "source": "center"}
    assert got["settings"]["near_empty_hours"]["source"] == "default"
    assert _get(h) == got
    assert _get(h, "C2")["version"] == 0  # another centre keeps the defaults

    [event] = outbox(h, EventType.CENTER_SETTINGS_CHANGED)
    assert event["subject"] == "C1"
    assert event["data"]["version"] == 1 and event["data"]["changed_by"] == "ada-admin"
    assert event["data"]["values"] == {**dict.fromkeys(DEFAULTS_NOW), **body}

    history = h.client.get("/v1/centers/C1/settings/history", headers=NURSE).json()["items"]
    assert [(e["actor"], e["action"], e["changes"]["after"]) for e in history] == [
        ("ada-admin", "center_settings.changed", body)]

    # the same values again change nothing: no second event, no second audit row
    again = h.client.put("/v1/centers/C1/settings", json=body, headers=ADMIN)
    assert again.status_code == 200 and again.json()["version"] == 1
    assert len(outbox(h, EventType.CENTER_SETTINGS_CHANGED)) == 1
    # back to the defaults: null or left out
    back = h.client.put("/v1/centers/C1/settings", json={"time_zone": None}, headers=ADMIN)
    assert back.json()["version"] == 2
    assert {v["source"] for v in back.json()["settings"].values()} == {"default"}
    assert len(h.client.get("/v1/centers/C1/settings/history", headers=NURSE).json()["items"]) == 2


@pytest.mark.parametrize("role", ["nurse", "oncologist", "biomed", "pharmacist"])
def test_only_an_admin_changes_a_centre_s_settings(tmp_path: Path, role: str) -> None:
    h, _ = start("scheduling", settings_for(tmp_path))
    r = h.client.put("/v1/centers/C1/settings", json={"due_soon_hours": 24}, headers=auth(role))
    assert r.status_code == 403, r.text
    assert _rows(h) == [] and outbox(h, EventType.CENTER_SETTINGS_CHANGED) == []


@pytest.mark.parametrize(("body", "field"), [
    ({"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
    ({"time_zone": "Europe/Paris\x00"}, "time_zone"),
    ({"time_zone": "../../etc/passwd"}, "time_zone"),
    ({"due_soon_hours": 0}, "due_soon_hours"),
    ({"due_soon_hours": True}, "due_soon_hours"),
    ({"flow_warning_pct": -5}, "flow_warning_pct"),
    ({"flow_warning_pct": 30}, "flow_critical_pct"),  # above the default critical band
    ({"flow_warning_pct": 10, "flow_critical_pct": 10}, "flow_critical_pct"),
    ({"refill_interval_days": 7, "refill_window_days": 4}, "refill_window_days"),
    ({"escalation_delay_seconds": 5}, "escalation_delay_seconds"),
    ({"due_soon_hour": 24}, "due_soon_hour"),  # a misspelt field
])
def test_a_wrong_value_is_a_422_naming_it_and_changes_nothing(tmp_path: Path, body: dict[str, Any],
                                                               field: str) -> None:
    h, _ = start("scheduling", settings_for(tmp_path))
    assert h.client.put("/v1/centers/C1/settings", json={"due_soon_hours": 30},
                        headers=ADMIN).status_code == 200
    before = _get(h)
    r = h.client.put("/v1/centers/C1/settings", json=body, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert field in r.text
    assert _get(h) == before
    assert len(outbox(h, EventType.CENTER_SETTINGS_CHANGED)) == 1


@pytest.mark.parametrize(("path", "status"), [("C%00X", 404), (".hidden", 422), ("C1%09", 422)])
def test_a_centre_path_that_is_no_centre_is_refused(tmp_path: Path, path: str, status: int) -> None:
    h, _ = start("scheduling", settings_for(tmp_path))
    r = h.client.put(f"/v1/centers/{path}/settings", json={"due_soon_hours": 24}, headers=ADMIN)
    assert r.status_code == status, r.text  # NUL in a path: the platform's 404 for any route
    assert _rows(h) == []


def test_the_worklist_and_the_sweep_follow_a_change_without_a_restart(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path, due_soon_hours=24))
    for n, center in ((1, "C1"), (2, "C2")):
        patient(h, f"MRN{n}", center=center)
        implant(h, bus, f"SN{n}", f"MRN{n}", center=center)
        therapy(h, f"MRN{n}", f"SN{n}", start_on="2026-11-04", regimen="saline_maintenance")
    # due 2026-11-04 00:00, 40 h after T0: outside a 24 h notice
    assert {a["center"]: a["urgency"] for a in worklist(h)} == {"C1": "later", "C2": "later"}
    r = h.client.put("/v1/centers/C1/settings", json={"due_soon_hours": 48}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert {a["center"]: a["urgency"] for a in worklist(h)} == {"C1": "due_soon", "C2": "later"}
    with h.runtime.uow_factory() as uow:
        assert announce_due_soon(uow, h.runtime.settings) == {"announced": 1}
        uow.commit()
    [due_soon] = outbox(h, EventType.REFILL_DUE_SOON)
    assert due_soon["data"]["center"] == "C1"


def test_a_new_therapy_takes_its_centre_s_refill_interval(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    assert h.client.put("/v1/centers/C1/settings", json={"refill_interval_days": 21},
                        headers=ADMIN).status_code == 200
    patient(h)
    implant(h, bus)
    assert therapy(h)["refill_interval_days"] == 21
