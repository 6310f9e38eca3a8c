"""Alerts' copy of the centre settings (CONTRACT.md, Centre settings): kept from the event in
version order, applied to the centre's flow readings and on-call default without a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.alerts.centers import effective_settings
from shared.events import EventType
from tests.factories import T0, flow_recorded, oncall_body
from tests.helpers import Harness, auth, emit, start
from tests.helpers import test_settings as settings_for

NURSE = auth("nurse")
ONCALL = auth("oncall")


def _changed(center: str, version: int, **values: Any) -> dict[str, Any]:
    return {"center": center, "version": version, "values": values, "changed_by": "ada",
            "changed_at": T0.isoformat()}


def _flow_alerts(h: Harness) -> dict[str, str]:
    r = h.client.get("/v1/alerts", params={"kind": "flow_abnormal"}, headers=NURSE)
    return {a["pump_serial"]: a["severity"] for a in r.json()["items"]}


def test_a_centre_s_flow_bands_apply_to_its_readings_only(tmp_path: Path) -> None:
    h, bus = start("alerts", settings_for(tmp_path))
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN0", 10.0, center="north",
                                                        refill_id="r0"))
    assert _flow_alerts(h) == {}  # 10 % is inside the default 15 % band
    emit(h, bus, EventType.CENTER_SETTINGS_CHANGED,
         _changed("north", 1, flow_warning_pct=8.0, flow_critical_pct=12.0), subject="north")
    for serial, pct, center in (("SN1", 10.0, "north"), ("SN2", 13.0, "north"),
                                ("SN3", 13.0, "south")):
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(serial, pct, center=center,
                                                            refill_id=f"r-{serial}"))
    assert _flow_alerts(h) == {"SN1": "warning", "SN2": "critical"}


def test_a_repeated_or_overtaken_version_changes_nothing(tmp_path: Path) -> None:
    h, bus = start("alerts", settings_for(tmp_path))
    emit(h, bus, EventType.CENTER_SETTINGS_CHANGED, _changed("north", 2, flow_warning_pct=9.0))
    emit(h, bus, EventType.CENTER_SETTINGS_CHANGED, _changed("north", 1, flow_warning_pct=5.0))
    emit(h, bus, EventType.CENTER_SETTINGS_CHANGED, _changed("north", 2, flow_warning_pct=5.0))
    with h.runtime.uow_factory() as uow:
        assert effective_settings(uow, h.runtime.settings, "north").flow_warning_pct == 9.0
        assert effective_settings(uow, h.runtime.settings, "south").flow_warning_pct == 15.0
    # back to the default: null values
    emit(h, bus, EventType.CENTER_SETTINGS_CHANGED, _changed("north", 3))
    with h.runtime.uow_factory() as uow:
        assert effective_settings(uow, h.runtime.settings, "north").flow_warning_pct == 15.0


def test_an_on_call_without_its_own_delay_takes_the_centre_s(tmp_path: Path) -> None:
    h, bus = start("alerts", settings_for(tmp_path, escalation_delay_seconds=600))
    emit(h, bus, EventType.CENTER_SETTINGS_CHANGED, _changed("north", 1,
                                                             escalation_delay_seconds=120))
    body = oncall_body([("ann", "log", "ann")])
    del body["escalation_delay_seconds"]
    for center, expected in (("north", 120), ("south", 600)):
        r = h.client.put(f"/v1/oncall/{center}", json=body, headers=ONCALL)
        assert r.status_code == 200, r.text
        assert r.json()["escalation_delay_seconds"] == expected
    r = h.client.put("/v1/oncall/north", json=oncall_body([("ann", "log", "ann")], delay_s=300),
                     headers=ONCALL)
    assert r.json()["escalation_delay_seconds"] == 300  # the schedule's own value wins
