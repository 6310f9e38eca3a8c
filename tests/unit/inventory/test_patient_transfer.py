"""Inventory's implant record follows a patient's transfer (scheduling's
`patient.center_changed`): the implanted pump takes the new centre, once, with a device history
line; explanted pumps and other patients' pumps stay."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from shared.events import EventType
from tests.factories import T0, patient_center_changed
from tests.helpers import Harness, auth, emit, start
from tests.helpers import test_settings as settings_for
from tests.security.stories import pump_body

BIOMED = auth("biomed", sub="bea")


def _implanted(h: Harness, serial: str, mrn: str, center: str = "north") -> None:
    assert h.client.post("/v1/pumps", json=pump_body(serial), headers=BIOMED).status_code == 201
    r = h.client.post(f"/v1/pumps/{serial}/implant", headers=BIOMED, json={
        "patient_mrn": mrn, "implanted_at": (T0 - timedelta(days=3)).isoformat(),
        "center": center})
    assert r.status_code == 200, r.text


def _pump(h: Harness, serial: str) -> dict[str, Any]:
    return dict(h.client.get(f"/v1/pumps/{serial}", headers=BIOMED).json())


def _history(h: Harness, serial: str) -> list[dict[str, Any]]:
    return list(h.client.get(f"/v1/pumps/{serial}/history", headers=BIOMED).json()["items"])


def test_the_implanted_pump_takes_the_new_centre_once(tmp_path: Path) -> None:
    h, bus = start("inventory", settings_for(tmp_path))
    _implanted(h, "SN-OLD", "MRN-1")
    assert h.client.post("/v1/pumps/SN-OLD/explant", json={"reason": "pocket infection"},
                         headers=BIOMED).status_code == 200
    _implanted(h, "SN-NOW", "MRN-1")
    _implanted(h, "SN-OTHER", "MRN-2")

    emit(h, bus, EventType.PATIENT_CENTER_CHANGED,
         patient_center_changed("south", mrn="MRN-1", serial="SN-NOW"))
    assert {s: _pump(h, s)["center"] for s in ("SN-OLD", "SN-NOW", "SN-OTHER")} == {
        "SN-OLD": "north", "SN-NOW": "south", "SN-OTHER": "north"}
    last = _history(h, "SN-NOW")[-1]
    assert last["action"] == "center_changed" and last["actor"] == "nina"
    assert last["details"] == {"from_center": "north", "center": "south", "source": "scheduling",
                               "changed_at": T0.isoformat()}
    assert last["from_status"] == last["to_status"] == "implanted"

    # the same fact again: nothing more
    emit(h, bus, EventType.PATIENT_CENTER_CHANGED,
         patient_center_changed("south", mrn="MRN-1", serial="SN-NOW"))
    assert [e["action"] for e in _history(h, "SN-NOW")].count("center_changed") == 1
    # the new centre's biomed sees the pump, the old centre's no longer does
    south = auth("biomed", sub="s", centers=["south"])
    north = auth("biomed", sub="n", centers=["north"])
    assert h.client.get("/v1/pumps/SN-NOW", headers=south).status_code == 200
    assert h.client.get("/v1/pumps/SN-NOW", headers=north).status_code == 404


def test_transfers_heard_out_of_order_end_at_the_latest(tmp_path: Path) -> None:
    h, bus = start("inventory", settings_for(tmp_path))
    _implanted(h, "SN-1", "MRN-1")
    emit(h, bus, EventType.PATIENT_CENTER_CHANGED,
         patient_center_changed("east", from_center="south", mrn="MRN-1", minutes=10))
    emit(h, bus, EventType.PATIENT_CENTER_CHANGED,
         patient_center_changed("south", mrn="MRN-1", minutes=5))
    assert _pump(h, "SN-1")["center"] == "east"
    assert [e["action"] for e in _history(h, "SN-1")].count("center_changed") == 1
