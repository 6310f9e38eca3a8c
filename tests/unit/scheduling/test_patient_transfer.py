"""A patient's transfer to another centre (`PATCH /v1/patients/{mrn}` with a new `center`): the
open work moves in the same transaction, past refills stay, the move is audited and announced,
and a token must cover both centres."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from services.scheduling.models import Appointment, Delivery, ImplantedPump, Patient, Refill
from shared.events import EventType
from tests.factories import T0
from tests.helpers import Harness, auth, start
from tests.helpers import test_settings as settings_for
from tests.unit.scheduling.scheduling_support import (
    NURSE,
    dispatch,
    outbox,
    setup_therapy,
    worklist,
)

OLD, NEW = "C1", "C2"
BOTH = auth("nurse", sub="mover", centers=[OLD, NEW])
OLD_ONLY = auth("nurse", sub="old-nurse", centers=[OLD])
NEW_ONLY = auth("nurse", sub="new-nurse", centers=[NEW])


def _move(h: Harness, headers: dict[str, str], mrn: str = "MRN1", center: str = NEW) -> Any:
    return h.client.patch(f"/v1/patients/{mrn}", json={"center": center}, headers=headers)


def _centres(h: Harness) -> dict[str, Any]:
    """Every row's centre, read without any scope."""
    with h.runtime.uow_factory() as uow:
        s = uow.session
        return {
            "patient": s.scalars(select(Patient.center)).all(),
            "pumps": dict(s.execute(select(ImplantedPump.serial_number, ImplantedPump.center)).all()),
            "appointments": dict(s.execute(select(Appointment.id, Appointment.center)).all()),
            "deliveries": dict(s.execute(select(Delivery.id, Delivery.center)).all()),
            "refills": dict(s.execute(select(Refill.id, Refill.center)).all()),
        }


def _items(h: Harness, path: str, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    r = h.client.get(path, params=params, headers=headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def test_a_transfer_moves_the_open_appointment_its_order_and_the_pump(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    therapy = setup_therapy(h, bus, start_on="2026-11-04")  # inside the lead time: ordered
    [appt] = worklist(h)
    assert appt["center"] == OLD and appt["delivery_id"]

    r = _move(h, BOTH)
    assert r.status_code == 200, r.text
    assert r.json()["center"] == NEW
    centres = _centres(h)
    assert centres["patient"] == [NEW]
    assert centres["pumps"] == {"SN1": NEW}
    assert centres["appointments"] == {appt["id"]: NEW}
    assert centres["deliveries"] == {appt["delivery_id"]: NEW}

    # the new centre's nurses see the next refill, the old centre's no longer do
    assert [a["id"] for a in _items(h, "/v1/appointments", NEW_ONLY, status="scheduled")] == [
        appt["id"]]
    assert _items(h, "/v1/appointments", OLD_ONLY, status="scheduled") == []
    assert [d["id"] for d in _items(h, "/v1/deliveries", NEW_ONLY)] == [appt["delivery_id"]]
    assert h.client.get(f"/v1/therapies/{therapy['id']}", headers=NEW_ONLY).status_code == 200
    assert h.client.get(f"/v1/therapies/{therapy['id']}", headers=OLD_ONLY).status_code == 404

    [event] = outbox(h, EventType.PATIENT_CENTER_CHANGED)
    assert event["subject"] == "MRN1"
    assert event["data"] == {
        "patient_mrn": "MRN1", "center": NEW, "from_center": OLD, "pump_serials": ["SN1"],
        "therapy_ids": [therapy["id"]], "appointment_ids": [appt["id"]],
        "delivery_ids": [appt["delivery_id"]], "changed_by": "mover",
        "changed_at": T0.isoformat().replace("+00:00", "Z")}
    assert "Lovelace" not in str(event) and "Ada" not in str(event)  # ids only, no names

    audit = h.client.get("/v1/audit", params={"action": "patient.center_changed"},
                         headers=auth("admin", sub="auditor")).json()["items"]
    [entry] = audit
    assert entry["actor"] == "mover" and entry["entity_id"] == "MRN1"
    assert entry["changes"]["from_center"] == OLD and entry["changes"]["center"] == NEW
    assert entry["changes"]["appointment_ids"] == [appt["id"]]


def test_past_refills_and_used_orders_keep_their_centre(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    setup_therapy(h, bus, start_on="2026-11-04")
    [chemo] = worklist(h)
    dispatch(h, chemo["delivery_id"])
    refill = h.client.post("/v1/refills", headers=NURSE, json={
        "pump_serial": "SN1", "performed_at": T0.isoformat(), "residual_volume_ml": 0,
        "fill_volume_ml": 30, "fill_type": "chemo", "appointment_id": chemo["id"],
        "delivery_id": chemo["delivery_id"]})
    assert refill.status_code == 201, refill.text
    saline = refill.json()["next_appointment"]

    assert _move(h, BOTH).status_code == 200
    centres = _centres(h)
    assert centres["refills"] == {refill.json()["id"]: OLD}  # counted where it was done
    assert centres["deliveries"] == {chemo["delivery_id"]: OLD}  # administered there
    assert centres["appointments"] == {chemo["id"]: OLD, saline["id"]: NEW}
    [event] = outbox(h, EventType.PATIENT_CENTER_CHANGED)
    assert event["data"]["appointment_ids"] == [saline["id"]]
    assert event["data"]["delivery_ids"] == []
    # the old centre still reads the refill it did; the new one does not
    assert [x["id"] for x in _items(h, "/v1/refills", OLD_ONLY)] == [refill.json()["id"]]
    assert _items(h, "/v1/refills", NEW_ONLY) == []
    # the registry counts the refill at the centre that did it
    report = h.client.get("/v1/reports/refills", params={"from": "2026-11", "to": "2026-11"},
                          headers=BOTH).json()
    assert {(r["center"], r["refills_done"]) for r in report["rows"]} == {(OLD, 1), ("*", 1)}


def test_a_token_without_the_old_centre_gets_404_and_changes_nothing(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    setup_therapy(h, bus, start_on="2026-11-04")
    before = _centres(h)
    r = _move(h, NEW_ONLY)
    assert r.status_code == 404, r.text
    assert r.json() == _move(h, NEW_ONLY, mrn="NO-SUCH-MRN").json()  # as if it did not exist
    assert _move(h, OLD_ONLY).status_code == 403  # nor a centre the token lacks as the target
    assert _centres(h) == before
    assert outbox(h, EventType.PATIENT_CENTER_CHANGED) == []


def test_the_same_centre_again_or_another_detail_moves_nothing(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    setup_therapy(h, bus, start_on="2026-11-04")
    before = _centres(h)
    assert _move(h, BOTH, center=OLD).status_code == 200
    assert h.client.patch("/v1/patients/MRN1", json={"weight_kg": 71},
                          headers=BOTH).status_code == 200
    assert _centres(h) == before
    assert outbox(h, EventType.PATIENT_CENTER_CHANGED) == []
