"""The FHIR R4 read API of each service on PostgreSQL, through HTTP with bearer tokens: every
resource and Bundle it answers passes the official schema (tests/fhir/validation.py), searches
filter as the CapabilityStatement says, reads of patient data are audited, and errors are
OperationOutcomes while the JSON API keeps problem+json."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.fhir_observations import refill_rows, seed
from services.alerts import paging
from shared.clock import MovableClock
from shared.events import EventType
from shared.messaging.inproc import InProcessBus
from tests.factories import T0, flow_recorded, oncall_body
from tests.fhir.validation import assert_valid
from tests.helpers import Harness, auth, emit, start, start_service
from tests.helpers import test_settings as settings_for
from tests.unit.scheduling.scheduling_support import (
    NURSE,
    dispatch,
    implant,
    patient,
    therapy,
    worklist,
)

FHIR_JSON = "application/fhir+json"
BIOMED = auth("biomed", sub="bea")


def fhir(h: Harness, url: str, headers: dict[str, str] = NURSE, status: int = 200) -> dict[str, Any]:
    """GET a FHIR URL: the status asked, fhir+json, and a valid resource (or OperationOutcome)."""
    r = h.client.get(url, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(FHIR_JSON)
    body: dict[str, Any] = r.json()
    assert_valid(body)
    if status >= 400:
        assert body["resourceType"] == "OperationOutcome"
    return body


def every_page(h: Harness, url: str) -> list[dict[str, Any]]:
    """The resources of a search, following its `next` links to the end."""
    out: list[dict[str, Any]] = []
    next_url: str | None = url
    while next_url is not None:
        bundle = fhir(h, next_url)
        assert bundle["type"] == "searchset"
        out += [e["resource"] for e in bundle["entry"]]
        next_url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"),
                        None)
    return out


def audited_reads(h: Harness) -> list[tuple[str, str]]:
    table = h.runtime.platform.audit
    with h.runtime.engine.connect() as conn:
        return [(r.entity_id, r.changes["route"]) for r in conn.execute(
            select(table).where(table.c.action == "read").order_by(table.c.id))]


# ----------------------------------------------------------------------------- inventory

def test_inventory_devices(tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    settings = settings_for(tmp_path, inventory_database_url=pg_database("inventory"))
    h = start_service("inventory", settings, clock=MovableClock(T0), bus=InProcessBus())
    raw = "]d2" + "0100812345000023" + "17271231" + "10LOT42" + "\x1d" + "21SN_1"
    assert h.client.post("/v1/pumps", json={"udi": raw}, headers=BIOMED).status_code == 201
    assert h.client.post("/v1/pumps", json={
        "serial_number": "SN-2", "model_code": "DEMO-CODMAN-3000", "lot_number": "LOT42",
        "expiry_date": "2027-12-31"}, headers=BIOMED).status_code == 201
    r = h.client.post("/v1/pumps/SN_1/implant", headers=BIOMED, json={
        "patient_mrn": "MRN-1", "implanted_at": T0.isoformat(), "center": "C1"})
    assert r.status_code == 200, r.text
    assert h.client.post("/v1/pumps/SN-2/quarantine", json={"reason": "dropped"},
                         headers=BIOMED).status_code == 200

    device = fhir(h, "/fhir/R4/Device/SN.5F1")  # SN_1: `_` is no FHIR id character
    assert device["serialNumber"] == "SN_1" and device["status"] == "active"
    assert base64.b64decode(device["udiCarrier"][0]["carrierAIDC"]).decode() == raw
    assert device["udiCarrier"][0]["carrierHRF"] == "(01)00812345000023(17)271231(10)LOT42(21)SN_1"
    assert device["patient"]["identifier"]["value"] == "MRN-1"
    by_hand = fhir(h, "/fhir/R4/Device/SN-2")
    assert by_hand["status"] == "inactive" and by_hand["udiCarrier"][0]["entryType"] == "manual"

    def serials(query: str) -> list[str]:
        return [d["serialNumber"] for d in every_page(h, "/fhir/R4/Device?" + query)]

    assert serials("") == ["SN-2", "SN_1"]
    assert serials("_count=1") == ["SN-2", "SN_1"]
    assert serials("identifier=SN_1") == ["SN_1"]
    assert serials("identifier=https://hai.example.org/fhir/sid/pump-serial|SN-2") == ["SN-2"]
    assert serials("identifier=urn:oid:1.2.3|SN-2") == []
    assert serials("patient=Patient/MRN-1") == ["SN_1"] == serials("patient=MRN-1")
    assert serials("status=inactive") == ["SN-2"] and serials("status=active") == ["SN_1"]
    assert serials("status=active,inactive") == ["SN-2", "SN_1"]
    assert serials("status=active&patient=MRN-9") == []
    # only the implanted pump's patient was read, and each read is on the trail
    assert {mrn for mrn, _ in audited_reads(h)} == {"MRN-1"}
    assert ("MRN-1", "GET /fhir/R4/Device/{resource_id}") in audited_reads(h)

    fhir(h, "/fhir/R4/Device/NOPE", status=404)
    fhir(h, "/fhir/R4/Device/a%20b", status=404)
    outcome = fhir(h, "/fhir/R4/Device?status=broken", status=422)
    assert "status" in outcome["issue"][0]["diagnostics"]
    fhir(h, "/fhir/R4/Device?serial=SN_1", status=422)  # not a search parameter we have
    fhir(h, "/fhir/R4/Device?_count=0", status=422)
    fhir(h, "/fhir/R4/Device?patient=Device/SN-2", status=422)
    fhir(h, "/fhir/R4/Device?status=active", headers={}, status=401)
    # the JSON API keeps its own error format
    problem = h.client.get("/v1/pumps/NOPE", headers=NURSE)
    assert problem.status_code == 404 and problem.headers["content-type"] == "application/problem+json"


# ----------------------------------------------------------------------------- scheduling

def fill(h: Harness, serial: str, days_before_t0: float, residual_ml: float,
         fill_type: str = "saline", **extra: Any) -> dict[str, Any]:
    r = h.client.post("/v1/refills", headers=NURSE, json={
        "pump_serial": serial, "performed_at": (T0 - timedelta(days=days_before_t0)).isoformat(),
        "residual_volume_ml": residual_ml, "fill_volume_ml": 30, "fill_type": fill_type, **extra})
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_scheduling_patient_appointments_flows_and_orders(
        tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    settings = settings_for(tmp_path, scheduling_database_url=pg_database("scheduling"),
                            fhir_mrn_systems={"C1": "urn:oid:2.16.840.1.113883.3.999.1"})
    h, bus = start("scheduling", settings, MovableClock(T0))
    # MRN1 on saline: two fills, the second measuring 1.5 mL/d against 1.0 (+50 %: H)
    patient(h, "MRN1")
    implant(h, bus, "SN1", "MRN1")
    therapy(h, "MRN1", "SN1", regimen="saline_maintenance", start_on="2026-10-10")
    first = fill(h, "SN1", 20, 0)
    second = fill(h, "SN1", 6, 30 - 14 * 1.5)
    # MRN2 on FUDR: the chemo fill due today is ordered at once, then dispatched
    patient(h, "MRN2", sex="male")
    implant(h, bus, "SN2", "MRN2")
    therapy(h, "MRN2", "SN2", start_on="2026-11-02", dexamethasone_mg=20, heparin_units=30000)
    order_id = worklist(h, patient_mrn="MRN2")[0]["delivery_id"]

    p = fhir(h, "/fhir/R4/Patient/MRN1")
    assert p["identifier"][0]["system"] == "urn:oid:2.16.840.1.113883.3.999.1"
    assert p["name"][0]["family"] == "Lovelace" and p["birthDate"] == "1960-05-01"
    fhir(h, "/fhir/R4/Patient/MRN404", status=404)

    (obs,) = every_page(h, "/fhir/R4/Observation?patient=Patient/MRN1")
    assert obs["id"] == second["id"] and first["measured_flow_ml_per_day"] is None
    assert obs["valueQuantity"]["value"] == 1.5 and obs["valueQuantity"]["code"] == "mL/d"
    assert obs["interpretation"][0]["coding"][0]["code"] == "H"
    assert obs["component"][0]["valueQuantity"]["value"] == 50
    assert obs["device"]["identifier"]["value"] == "SN1"
    assert every_page(h, "/fhir/R4/Observation?device=Device/SN1&date=ge2026-10-27") == [obs]
    assert every_page(h, "/fhir/R4/Observation?device=SN1&date=lt2026-10-27") == []
    assert every_page(h, "/fhir/R4/Observation?patient=MRN2") == []
    assert fhir(h, f"/fhir/R4/Observation/{second['id']}") == obs
    fhir(h, f"/fhir/R4/Observation/{first['id']}", status=404)  # no flow measured: none

    appointments = every_page(h, "/fhir/R4/Appointment?patient=MRN1")
    assert [a["status"] for a in appointments] == ["fulfilled", "fulfilled", "proposed"]
    assert {a["serviceType"][0]["coding"][0]["code"] for a in appointments} == {"saline"}
    next_one = appointments[-1]
    assert next_one["id"] == second["next_appointment"]["id"]
    basis = {e["url"].rsplit("/", 1)[1]: e for e in next_one["extension"]}["refill-due-basis"]
    assert basis["valueCoding"]["code"] == second["next_appointment"]["due_basis"]
    assert every_page(h, "/fhir/R4/Appointment?patient=MRN1&status=proposed") == [next_one]
    assert every_page(h, "/fhir/R4/Appointment?patient=MRN1&status=booked,cancelled") == []
    due = second["next_appointment"]["due_at"][:10]
    assert every_page(h, f"/fhir/R4/Appointment?patient=MRN1&date={due}") == [next_one]
    assert len(every_page(h, f"/fhir/R4/Appointment?patient=MRN1&date=lt{due}")) == 2
    assert every_page(h, f"/fhir/R4/Appointment?patient=MRN1&date=gt{due}") == []
    assert every_page(h, f"/fhir/R4/Appointment?patient=MRN1&date=ge{due}") == [next_one]
    assert len(every_page(h, f"/fhir/R4/Appointment?patient=MRN1&date=le{due}")) == 3
    assert every_page(h, f"/fhir/R4/Appointment?patient=MRN1&date=ge{due}&date=lt{due}") == []
    chemo = every_page(h, "/fhir/R4/Appointment?patient=MRN2&status=proposed")
    assert [a["serviceType"][0]["coding"][0]["code"] for a in chemo] == ["chemo"]

    (request,) = every_page(h, "/fhir/R4/MedicationRequest?patient=MRN2&status=active")
    assert request["id"] == order_id and request["status"] == "active"
    units = [d["doseAndRate"][0]["doseQuantity"]["code"] for d in request["dosageInstruction"]]
    assert units == ["mg", "mg", "[iU]"]
    assert "mg/kg/day" in request["dosageInstruction"][0]["text"]
    assert request["dispenseRequest"]["quantity"]["value"] == 30
    assert every_page(h, "/fhir/R4/MedicationRequest?patient=MRN2&status=completed") == []
    assert every_page(h, "/fhir/R4/MedicationDispense?patient=MRN2") == []
    fhir(h, f"/fhir/R4/MedicationDispense/{order_id}", status=404)  # not dispatched yet

    dispatch(h, order_id, lot="BAG-9")
    (dispense,) = every_page(h, "/fhir/R4/MedicationDispense?patient=Patient/MRN2")
    assert dispense["status"] == "in-progress" and dispense["contained"][0]["batch"]["lotNumber"] == "BAG-9"
    assert dispense["whenHandedOver"] == "2026-11-02T08:00:00Z"
    assert fhir(h, f"/fhir/R4/MedicationDispense/{order_id}") == dispense
    assert every_page(h, "/fhir/R4/MedicationDispense?status=completed") == []
    assert fhir(h, f"/fhir/R4/MedicationRequest/{order_id}")["status"] == "active"

    reads = audited_reads(h)
    assert ("MRN1", "GET /fhir/R4/Observation") in reads
    assert ("MRN2", "GET /fhir/R4/MedicationDispense/{resource_id}") in reads
    fhir(h, "/fhir/R4/Observation?date=2026-13-01", status=422)
    fhir(h, "/fhir/R4/Appointment?status=booked&code=x", status=422)


# ----------------------------------------------------------------------------- alerts

def test_alerts_flags_and_pages(tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    settings = settings_for(tmp_path, alerts_database_url=pg_database("alerts"))
    bus = InProcessBus()
    h = start_service("alerts", settings, clock=MovableClock(T0), bus=bus)
    r = h.client.put("/v1/oncall/north", json=oncall_body([("ann", "log", "ann")]),
                     headers=auth("oncall"))
    assert r.status_code == 200, r.text
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN1", 30, mrn="MRN-1"))
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN2", -20, mrn="MRN-2"))
    paging.sweep_once(h.runtime)
    alerts = h.client.get("/v1/alerts", headers=NURSE).json()["items"]
    second = next(a for a in alerts if a["patient_mrn"] == "MRN-2")
    assert h.client.post(f"/v1/alerts/{second['id']}/resolve", json={"resolution": "refilled"},
                         headers=NURSE).status_code == 200

    (flag,) = every_page(h, "/fhir/R4/Flag?patient=MRN-1&status=active")
    assert flag["code"]["coding"][0]["code"] == "flow_abnormal" and flag["status"] == "active"
    assert flag["category"][0]["coding"][0]["code"] == "clinical"
    assert flag["period"] == {"start": "2026-11-02T08:00:00Z"}
    assert every_page(h, "/fhir/R4/Flag?patient=MRN-1&status=inactive") == []
    (closed,) = every_page(h, "/fhir/R4/Flag?status=inactive")
    assert closed["subject"]["identifier"]["value"] == "MRN-2" and closed["period"]["end"]
    assert len(every_page(h, "/fhir/R4/Flag?_count=1")) == 2
    assert fhir(h, f"/fhir/R4/Flag/{flag['id']}") == flag

    pages = every_page(h, "/fhir/R4/Communication?patient=MRN-1")
    assert [(c["status"], c["priority"]) for c in pages] == [("completed", "stat")]
    assert pages[0]["about"][0]["reference"].endswith(f"/fhir/R4/Flag/{flag['id']}")
    assert pages[0]["recipient"][0]["display"].startswith("ann")
    assert len(every_page(h, "/fhir/R4/Communication")) == 2
    assert fhir(h, f"/fhir/R4/Communication/{pages[0]['id']}") == pages[0]
    assert ("MRN-1", "GET /fhir/R4/Communication") in audited_reads(h)
    fhir(h, "/fhir/R4/Flag/nope", status=404)


# ----------------------------------------------------------------------------- keyset paging

def test_observation_pages_walk_every_row_once_in_order(
        tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    """1,000 flows of one patient, three at each instant with random ids, beside another
    patient's: `_count=37` pages through all of them by the `next` links, in (time, id) order,
    none twice, none missed; so do the device and date searches."""
    settings = settings_for(tmp_path, scheduling_database_url=pg_database("scheduling"))
    h, _ = start("scheduling", settings, MovableClock(T0))
    rows = list(refill_rows(1000, mrn="MRN-K", serial="SN-K"))
    seed(h.runtime.engine, iter(rows))
    seed(h.runtime.engine, refill_rows(300, mrn="MRN-OTHER", serial="SN-OTHER", seed=5))
    expected = [r["id"] for r in sorted(rows, key=lambda r: (r["performed_at"], r["id"]))]

    walked = [o["id"] for o in every_page(h, "/fhir/R4/Observation?patient=MRN-K&_count=37")]
    assert walked == expected
    by_device = [o["id"] for o in every_page(h, "/fhir/R4/Observation?device=SN-K&_count=100")]
    assert by_device == expected
    cut = rows[600]["performed_at"]
    since = [o["id"] for o in every_page(
        h, "/fhir/R4/Observation?patient=MRN-K&date=ge" + cut.isoformat().replace("+00:00", "Z")
        + "&_count=50")]
    assert since == [i for i, r in zip(expected, sorted(rows, key=lambda r: (r["performed_at"], r["id"])),
                                       strict=True) if r["performed_at"] >= cut]
    everyone = every_page(h, "/fhir/R4/Observation?_count=500")
    assert len(everyone) == 1300 and len({o["id"] for o in everyone}) == 1300
    # a cursor of one search is refused by another
    first = fhir(h, "/fhir/R4/Observation?patient=MRN-K&_count=10")
    cursor = first["link"][1]["url"].rsplit("_cursor=", 1)[1]
    fhir(h, f"/fhir/R4/Appointment?_cursor={cursor}", status=422)
