"""A short, valid story per service that performs every writing route once, through the API.

Each story takes a `Call` that sends one write and returns its JSON answer; the audit test
passes one that checks the audit trail after each write. The bodies are reused by the
idempotency tests.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from services.alerts import paging
from shared.events import EventType
from shared.messaging.inproc import InProcessBus
from tests.factories import T0, flow_recorded, oncall_body, pump_implanted
from tests.helpers import Harness, auth, emit

# Call(method, path template, concrete path, json body) → the answer's JSON
Call = Callable[[str, str, str, Any], Any]


# ---------------------------------------------------------------- inventory

def pump_model_body(code: str = "AUD-1") -> dict[str, Any]:
    return {"code": code, "manufacturer": "Acme", "name": f"Acme {code}",
            "gtin": "00812345000047", "reservoir_ml": 40, "nominal_flow_ml_per_day": 2.0}


def pump_body(serial: str, model_code: str = "DEMO-INTERA-3000", lot: str = "LOT-A") -> dict[str, Any]:
    return {"serial_number": serial, "model_code": model_code, "lot_number": lot,
            "expiry_date": "2029-12-31", "location": "cabinet A"}


def recall_body(lot: str = "LOT-R", model_code: str = "DEMO-INTERA-3000") -> dict[str, Any]:
    return {"model_code": model_code, "lot_numbers": [lot], "reason": "valve defect"}


def inventory_story(harness: Harness, bus: InProcessBus, call: Call) -> None:
    """A model added; pumps registered, quarantined, released, implanted, explanted, retired;
    a recall."""
    call("POST", "/v1/pump-models", "/v1/pump-models", pump_model_body())
    call("POST", "/v1/pumps", "/v1/pumps", pump_body("AUD-SN1"))
    call("POST", "/v1/pumps", "/v1/pumps", pump_body("AUD-SN2"))
    call("POST", "/v1/pumps/{serial}/quarantine", "/v1/pumps/AUD-SN1/quarantine",
         {"reason": "dropped on the floor"})
    call("POST", "/v1/pumps/{serial}/release", "/v1/pumps/AUD-SN1/release",
         {"reason": "inspected, fine"})
    call("POST", "/v1/pumps/{serial}/implant", "/v1/pumps/AUD-SN1/implant",
         {"patient_mrn": "MRN-AUD-1", "implanted_at": (T0 - timedelta(days=1)).isoformat(),
          "center": "north", "surgeon": "dr-s"})
    call("POST", "/v1/pumps/{serial}/explant", "/v1/pumps/AUD-SN1/explant",
         {"reason": "end of therapy"})
    call("POST", "/v1/pumps/{serial}/retire", "/v1/pumps/AUD-SN2/retire",
         {"reason": "expired"})
    call("POST", "/v1/pumps", "/v1/pumps", pump_body("AUD-SN3", lot="LOT-R"))
    call("POST", "/v1/recalls", "/v1/recalls", recall_body())


# ---------------------------------------------------------------- scheduling

def implanted(serial: str = "SN-AUD-1", mrn: str = "MRN-AUD-1") -> dict[str, Any]:
    """Inventory's implant of a pump of the demo model (the model the stories register)."""
    return pump_implanted(serial, mrn, model_code="DEMO-INTERA-3000",
                          implanted_at=datetime(2026, 10, 1, tzinfo=UTC))


def patient_body(mrn: str = "MRN-AUD-1") -> dict[str, Any]:
    return {"mrn": mrn, "given_name": "Ada", "family_name": "Lovelace",
            "birth_date": "1960-05-01", "weight_kg": 70, "center": "north"}


def therapy_body(serial: str = "SN-AUD-1", mrn: str = "MRN-AUD-1") -> dict[str, Any]:
    # starts inside the pharmacy lead time: the first chemo fill is ordered at once
    return {"patient_mrn": mrn, "pump_serial": serial, "regimen": "fudr_alternating",
            "start_on": (T0 + timedelta(days=2)).date().isoformat()}


def refill_body(appt: dict[str, Any], serial: str = "SN-AUD-1") -> dict[str, Any]:
    """The chemo fill of an appointment, with the order id scanned from its bag."""
    return {"pump_serial": serial, "performed_at": (T0 - timedelta(hours=1)).isoformat(),
            "residual_volume_ml": 2.0, "fill_volume_ml": 30.0, "fill_type": "chemo",
            "appointment_id": appt["id"], "delivery_id": appt["delivery_id"]}


def dispatched(harness: Harness, appt: dict[str, Any]) -> None:
    """The pharmacy dispatches an appointment's order (a chemo fill needs its bag in hand)."""
    r = harness.client.post(f"/v1/deliveries/{appt['delivery_id']}/status",
                            json={"status": "dispatched", "at": (T0 - timedelta(hours=2)).isoformat()},
                            headers=auth("pharmacist", sub="pharmacy"))
    assert r.status_code == 200, r.text


def therapy_ready(harness: Harness, bus: InProcessBus, call: Call, serial: str = "SN-AUD-1",
                  mrn: str = "MRN-AUD-1") -> tuple[dict[str, Any], dict[str, Any]]:
    """A patient with an implanted pump and a therapy: (therapy, its first appointment)."""
    call("POST", "/v1/patients", "/v1/patients", patient_body(mrn))
    emit(harness, bus, EventType.PUMP_IMPLANTED, implanted(serial, mrn))
    therapy = call("POST", "/v1/therapies", "/v1/therapies", therapy_body(serial, mrn))
    appointments = harness.client.get("/v1/appointments", params={"patient_mrn": mrn},
                                      headers=_reader()).json()["items"]
    return therapy, appointments[0]


def scheduling_story(harness: Harness, bus: InProcessBus, call: Call) -> None:
    """A patient, a therapy, its appointment booked, its order accepted, the refill done,
    the weight changed and the therapy paused; another patient transferred to another centre."""
    therapy, appt = therapy_ready(harness, bus, call)
    call("PATCH", "/v1/patients/{mrn}", "/v1/patients/MRN-AUD-1", {"weight_kg": 72})
    call("PATCH", "/v1/appointments/{appointment_id}", f"/v1/appointments/{appt['id']}",
         {"scheduled_for": (T0 + timedelta(days=2, hours=2)).isoformat()})
    assert appt["delivery_id"], appt
    call("POST", "/v1/deliveries/{delivery_id}/status",
         f"/v1/deliveries/{appt['delivery_id']}/status",
         {"status": "accepted", "at": (T0 - timedelta(hours=3)).isoformat()})
    call("POST", "/v1/deliveries/{delivery_id}/status",
         f"/v1/deliveries/{appt['delivery_id']}/status",
         {"status": "dispatched", "at": (T0 - timedelta(hours=2)).isoformat()})
    done = call("POST", "/v1/refills", "/v1/refills", refill_body(appt))
    call("POST", "/v1/refills/{refill_id}/entered-in-error",
         f"/v1/refills/{done['id']}/entered-in-error", {"reason": "recorded twice"})
    call("PATCH", "/v1/therapies/{therapy_id}", f"/v1/therapies/{therapy['id']}",
         {"action": "pause", "reason": "neutropenia"})
    call("PUT", "/v1/centers/{center}/settings", "/v1/centers/north/settings",
         {"due_soon_hours": 36})
    # a second patient transferred to south with their open appointment, order and pump
    therapy_ready(harness, bus, call, serial="SN-AUD-MOVED", mrn="MRN-AUD-MOVED")
    moved = call("PATCH", "/v1/patients/{mrn}", "/v1/patients/MRN-AUD-MOVED",
                 {"center": "south"})
    assert moved["center"] == "south", moved


# ---------------------------------------------------------------- alerts

def log_oncall() -> dict[str, Any]:
    """The stories' on-call: one member, paged in the log."""
    return oncall_body([("ann", "log", "ann")])


def silence_body(reason: str = "pump study") -> dict[str, Any]:
    return {"matchers": {"kind": "flow_abnormal", "center": "south"},
            "starts_at": T0.isoformat(), "ends_at": (T0 + timedelta(hours=2)).isoformat(),
            "reason": reason}


def alerts_story(harness: Harness, bus: InProcessBus, call: Call) -> None:
    """On-call set, a silence, an alert raised by an event and paged, its page seen, the alert
    acknowledged, snoozed and resolved."""
    call("PUT", "/v1/oncall/{center}", "/v1/oncall/north", log_oncall())
    call("POST", "/v1/silences", "/v1/silences", silence_body())
    emit(harness, bus, EventType.FLOW_RECORDED, flow_recorded("SN-AUD-1", mrn="MRN-AUD-1"))
    [alert] = harness.client.get("/v1/alerts", headers=_reader()).json()["items"]
    paging.sweep_once(harness.runtime)
    [page] = harness.client.get("/v1/notifications", params={"alert_id": alert["id"]},
                                headers=_reader()).json()["items"]
    call("POST", "/v1/notifications/{notification_id}/seen",
         f"/v1/notifications/{page['id']}/seen", {})
    call("POST", "/v1/alerts/{alert_id}/ack", f"/v1/alerts/{alert['id']}/ack",
         {"note": "on my way"})
    call("POST", "/v1/alerts/{alert_id}/snooze", f"/v1/alerts/{alert['id']}/snooze",
         {"until": (harness.runtime.clock.now() + timedelta(hours=2)).isoformat(),
          "reason": "re-measuring after the next refill"})
    call("POST", "/v1/alerts/{alert_id}/resolve", f"/v1/alerts/{alert['id']}/resolve",
         {"resolution": "flow re-measured, pump fine"})


STORIES: dict[str, Callable[[Harness, InProcessBus, Call], None]] = {
    "inventory": inventory_story,
    "scheduling": scheduling_story,
    "alerts": alerts_story,
}


def _reader() -> dict[str, str]:
    return auth("nurse", sub="reader")
