"""The FHIR mappings as pure functions (rows → resources), each resource checked against the
official FHIR R4 JSON Schema and the invariants it relies on (tests/fhir/validation.py)."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from services.alerts.fhir import communication_resource, flag_resource
from services.alerts.models import Alert, Notification
from services.inventory.fhir import device_resource
from services.inventory.models import Pump, PumpModel
from services.scheduling.fhir import (
    appointment_resource,
    interpretation,
    medication_dispense_resource,
    medication_request_resource,
    observation_resource,
    patient_resource,
)
from services.scheduling.models import Appointment, Delivery, DeliveryEvent, Patient, Refill
from shared.errors import Invalid
from shared.fhir import (
    FhirApi,
    SearchParam,
    Systems,
    date_range,
    fhir_id,
    key_of,
    operation_outcome,
)
from tests.fhir.validation import assert_valid, schema_errors

T = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
SYSTEMS = Systems(base="https://hai.example.org/fhir",
                  mrn_systems={"Centre A": "urn:oid:1.2.3.4.5"},
                  service_urls={"inventory": "http://inv:8001", "scheduling": "http://sch:8002",
                                "alerts": "http://alr:8003"})
UCUM = "http://unitsofmeasure.org"
RAW_UDI = "]d2" + "01" + "00812345000023" + "17" + "271231" + "10" + "LOT42" + "\x1d" + "21" + "SN-1"


def model() -> PumpModel:
    return PumpModel(code="DEMO-CODMAN-3000", manufacturer="Codman (demo)", name="DEMO Codman 3000",
                     gtin="00812345000023", reservoir_ml=30.0, nominal_flow_ml_per_day=1.0)


def pump(**over: Any) -> Pump:
    values: dict[str, Any] = {
        "serial_number": "SN-1", "model_code": "DEMO-CODMAN-3000", "gtin": "00812345000023",
        "lot_number": "LOT42", "expiry_date": date(2027, 12, 31), "reservoir_ml": 30.0,
        "labeled_flow_ml_per_day": 1.2, "status": "implanted", "location": None, "patient_mrn": "MRN-1",
        "center": "Centre A", "implanted_at": T, "udi_aidc": RAW_UDI, "created_at": T, "updated_at": T}
    values.update(over)
    return Pump(**values)


# ----------------------------------------------------------------------------- inventory

def test_an_implanted_scanned_pump_is_a_device_with_its_udi_carrier_and_patient() -> None:
    device = device_resource(pump(), model(), SYSTEMS)
    assert_valid(device)
    carrier = device["udiCarrier"][0]
    assert carrier["deviceIdentifier"] == "00812345000023"
    assert carrier["carrierHRF"] == "(01)00812345000023(17)271231(10)LOT42(21)SN-1"
    assert base64.b64decode(carrier["carrierAIDC"]).decode() == RAW_UDI
    assert carrier["entryType"] == "barcode"
    assert (device["serialNumber"], device["lotNumber"], device["expirationDate"]) == \
        ("SN-1", "LOT42", "2027-12-31")
    assert device["status"] == "active"
    assert device["patient"]["reference"] == "http://sch:8002/fhir/R4/Patient/MRN-1"
    assert device["patient"]["identifier"] == {"system": "urn:oid:1.2.3.4.5", "value": "MRN-1"}
    flow = next(p for p in device["property"]
                if p["type"]["coding"][0]["code"] == "labeled-flow-rate")
    assert flow["valueQuantity"] == [{"value": 1.2, "unit": "mL/d", "system": UCUM, "code": "mL/d"}]


@pytest.mark.parametrize("status", ["explanted", "quarantined", "retired"])
def test_a_pump_out_of_use_is_inactive_and_names_no_patient(status: str) -> None:
    device = device_resource(pump(status=status), model(), SYSTEMS)
    assert_valid(device)
    assert device["status"] == "inactive" and "patient" not in device


def test_a_pump_registered_by_hand_has_no_aidc_and_says_so() -> None:
    device = device_resource(pump(udi_aidc=None, status="in_stock", patient_mrn=None, lot_number=None),
                             None, SYSTEMS)
    assert_valid(device)
    carrier = device["udiCarrier"][0]
    assert carrier["entryType"] == "manual" and "carrierAIDC" not in carrier
    assert carrier["carrierHRF"] == "(01)00812345000023(17)271231(21)SN-1"
    assert device["status"] == "active" and "lotNumber" not in device


# ----------------------------------------------------------------------------- scheduling

def test_a_patient_carries_the_mrn_in_the_centres_system() -> None:
    p = Patient(mrn="MRN_1", given_name="Ada", family_name="Lovelace", birth_date=date(1960, 5, 1),
                weight_kg=70, center="Centre A", sex="female", created_at=T, updated_at=T)
    resource = patient_resource(p, SYSTEMS)
    assert_valid(resource)
    assert resource["id"] == "MRN.5F1" and key_of(resource["id"]) == "MRN_1"
    (identifier,) = resource["identifier"]
    assert (identifier["system"], identifier["value"]) == ("urn:oid:1.2.3.4.5", "MRN_1")
    assert identifier["type"]["coding"][0]["code"] == "MR"
    other = patient_resource(Patient(mrn="M2", given_name="B", family_name="C",
                                     birth_date=date(1950, 1, 1), weight_kg=60, center="Centre B",
                                     sex=None, created_at=T, updated_at=T), SYSTEMS)
    assert_valid(other)
    assert other["identifier"][0]["system"] == "https://hai.example.org/fhir/sid/mrn/Centre%20B"
    assert "gender" not in other


def appointment(**over: Any) -> Appointment:
    values: dict[str, Any] = {
        "id": "a-1", "therapy_id": "t-1", "patient_mrn": "MRN-1", "center": "Centre A", "pump_serial": "SN-1",
        "fill_type": "chemo", "due_at": T, "scheduled_for": None, "status": "scheduled",
        "projected_empty_at": T + timedelta(days=5), "delivery_id": None, "refill_id": None,
        "due_basis": "projected_empty", "created_at": T - timedelta(days=14), "updated_at": T}
    values.update(over)
    return Appointment(**values)


@pytest.mark.parametrize(("over", "status", "start"), [
    ({}, "proposed", T),
    ({"scheduled_for": T + timedelta(hours=3)}, "booked", T + timedelta(hours=3)),
    ({"status": "completed", "scheduled_for": T}, "fulfilled", T),
    ({"status": "cancelled"}, "cancelled", T),
])
def test_an_appointment_keeps_fill_type_due_time_and_basis(over: dict[str, Any], status: str,
                                                           start: datetime) -> None:
    resource = appointment_resource(appointment(**over), SYSTEMS, window_days=4)
    assert_valid(resource)
    assert resource["status"] == status
    assert resource["start"] == start.isoformat().replace("+00:00", "Z")
    assert resource["serviceType"][0]["coding"][0]["code"] == "chemo"
    ext = {e["url"].rsplit("/", 1)[1]: e for e in resource["extension"]}
    assert ext["refill-due-basis"]["valueCoding"]["code"] == "projected_empty"
    assert ext["refill-due-at"]["valueDateTime"] == "2026-11-26T14:00:00Z"
    assert resource["requestedPeriod"] == [{"start": "2026-11-22T14:00:00Z",
                                            "end": "2026-11-30T14:00:00Z"}]
    actors = [p["actor"]["reference"] for p in resource["participant"]]
    assert actors == ["http://sch:8002/fhir/R4/Patient/MRN-1", "http://inv:8001/fhir/R4/Device/SN-1"]


def refill(deviation_pct: float, **over: Any) -> Refill:
    values: dict[str, Any] = {
        "id": "r-1", "pump_serial": "SN-1", "patient_mrn": "MRN-1", "center": "Centre A", "therapy_id": "t-1",
        "appointment_id": "a-1", "performed_at": T, "residual_volume_ml": 2.0, "fill_volume_ml": 30.0,
        "fill_type": "saline", "elapsed_days": 14.0,
        "measured_flow_ml_per_day": round(1.0 * (1 + deviation_pct / 100), 4),
        "expected_flow_ml_per_day": 1.0, "flow_deviation_pct": deviation_pct, "outside_window": False,
        "recorded_by": "nina", "created_at": T + timedelta(minutes=1), "status": "recorded"}
    values.update(over)
    return Refill(**values)


@pytest.mark.parametrize(("deviation", "flag"), [
    (16.0, "H"), (-16.0, "L"), (15.0, "N"), (-15.0, "N"), (0.0, "N"), (14.9, "N"), (15.01, "H"),
])
def test_a_flow_observation_is_interpreted_against_the_band(deviation: float, flag: str) -> None:
    resource = observation_resource(refill(deviation), SYSTEMS, band_pct=15.0)
    assert_valid(resource)
    assert interpretation(deviation, 15.0) == flag
    assert resource["interpretation"][0]["coding"][0]["code"] == flag
    assert resource["valueQuantity"]["system"] == UCUM and resource["valueQuantity"]["code"] == "mL/d"
    deviation_component = resource["component"][0]
    assert deviation_component["code"]["coding"][0]["code"] == "flow-deviation"
    assert deviation_component["valueQuantity"] == {"value": deviation if deviation % 1 else
                                                    int(deviation), "unit": "%",
                                                    "system": UCUM, "code": "%"}
    assert resource["device"]["reference"] == "http://inv:8001/fhir/R4/Device/SN-1"
    assert resource["status"] == "final"
    low, high = resource["referenceRange"][0]["low"], resource["referenceRange"][0]["high"]
    assert (low["value"], high["value"]) == (0.85, 1.15)


def test_a_flow_entered_in_error_says_so() -> None:
    resource = observation_resource(refill(20.0, status="entered_in_error",
                                           void_reason="wrong pump"), SYSTEMS, band_pct=15.0)
    assert_valid(resource)
    assert resource["status"] == "entered-in-error"
    assert "wrong pump" in resource["note"][0]["text"]


def test_a_refill_without_a_measured_flow_is_no_observation() -> None:
    with pytest.raises(ValueError):
        observation_resource(refill(0.0, measured_flow_ml_per_day=None, flow_deviation_pct=None),
                             SYSTEMS, band_pct=15.0)


DRUGS = [
    {"code": "floxuridine", "name": "floxuridine", "amount": 252.0, "unit": "mg",
     "basis": "0.12 mg/kg/day x 70 kg x 30 mL / 1.0 mL/day"},
    {"code": "dexamethasone", "name": "dexamethasone", "amount": 20.0, "unit": "mg",
     "basis": "therapy setting"},
    {"code": "heparin", "name": "heparin", "amount": 30000.0, "unit": "units",
     "basis": "therapy setting"},
]


def delivery(status: str = "requested", **over: Any) -> Delivery:
    values: dict[str, Any] = {
        "id": "o-1", "appointment_id": "a-1", "therapy_id": "t-1", "patient_mrn": "MRN-1",
        "pump_serial": "SN-1",
        "center": "Centre A", "needed_by": T + timedelta(days=3), "status": status, "drugs": DRUGS,
        "order": {"fill_volume_ml": 30.0, "infusion_days": 30.0, "diluent": "0.9 % sodium chloride "
               "to 30 mL"}, "lot": None, "beyond_use_at": None, "created_at": T, "updated_at": T}
    values.update(over)
    return Delivery(**values)


def event(status: str, at: datetime, reason: str | None = None, applied: bool = True) -> DeliveryEvent:
    return DeliveryEvent(delivery_id="o-1", at=at, status=status, reason=reason, applied=applied,
                         source="queue", recorded_at=at)


def test_a_pharmacy_order_is_a_medication_request_with_every_drug_in_ucum() -> None:
    resource = medication_request_resource(delivery(), [event("requested", T)], SYSTEMS)
    assert_valid(resource)
    assert (resource["status"], resource["intent"]) == ("active", "order")
    (medication,) = resource["contained"]
    strengths = [(i["itemCodeableConcept"]["text"], i["strength"]["numerator"]["value"],
                  i["strength"]["numerator"]["code"], i["strength"]["denominator"]["code"])
                 for i in medication["ingredient"] if i["isActive"]]
    assert strengths == [("floxuridine", 252, "mg", "mL"), ("dexamethasone", 20, "mg", "mL"),
                         ("heparin", 30000, "[iU]", "mL")]
    codes = {c["system"]: c["code"] for i in medication["ingredient"]
             for c in i["itemCodeableConcept"]["coding"]}
    assert codes["http://snomed.info/sct"] == "387390002"  # the saline diluent, last
    texts = [d["text"] for d in resource["dosageInstruction"]]
    assert texts[0] == "floxuridine 252.0 mg: 0.12 mg/kg/day x 70 kg x 30 mL / 1.0 mL/day"
    doses = [d["doseAndRate"][0]["doseQuantity"] for d in resource["dosageInstruction"]]
    assert all(q["system"] == UCUM for q in doses) and doses[2]["code"] == "[iU]"
    assert resource["dispenseRequest"] == {
        "quantity": {"value": 30, "unit": "mL", "system": UCUM, "code": "mL"},
        "expectedSupplyDuration": {"value": 30, "unit": "days", "system": UCUM, "code": "d"}}


def test_a_rejected_order_is_cancelled_with_the_pharmacys_reason() -> None:
    resource = medication_request_resource(
        delivery("rejected"), [event("requested", T), event("rejected", T, "out of stock")], SYSTEMS)
    assert_valid(resource)
    assert resource["status"] == "cancelled"
    assert resource["statusReason"]["text"] == "rejected: out of stock"


def test_a_dispatched_order_is_a_dispense_with_its_lot_and_beyond_use_time() -> None:
    history = [event("requested", T), event("compounded", T + timedelta(hours=5)),
               event("dispatched", T + timedelta(hours=8))]
    d = delivery("dispatched", lot="BAG-7", beyond_use_at=T + timedelta(days=7))
    resource = medication_dispense_resource(d, history, SYSTEMS)
    assert_valid(resource)
    assert resource["status"] == "in-progress"
    assert resource["contained"][0]["batch"] == {"lotNumber": "BAG-7",
                                                 "expirationDate": "2026-12-03T14:00:00Z"}
    assert (resource["whenPrepared"], resource["whenHandedOver"]) == \
        ("2026-11-26T19:00:00Z", "2026-11-26T22:00:00Z")
    assert resource["authorizingPrescription"][0]["reference"] == \
        "http://sch:8002/fhir/R4/MedicationRequest/o-1"
    delivered = medication_dispense_resource(delivery("delivered"), [
        *history, event("delivered", T + timedelta(days=1))], SYSTEMS)
    assert_valid(delivered)
    assert delivered["status"] == "completed" and delivered["whenHandedOver"] == "2026-11-26T22:00:00Z"
    with pytest.raises(ValueError):
        medication_dispense_resource(delivery(), [event("requested", T)], SYSTEMS)


# ----------------------------------------------------------------------------- alerts

def alert(**over: Any) -> Alert:
    values: dict[str, Any] = {
        "id": "al-1", "kind": "flow_abnormal", "severity": "critical", "status": "firing", "dedup_key": "k",
        "patient_mrn": "MRN-1", "pump_serial": "SN-1", "center": "Centre A", "summary": "flow +30 %",
        "details": {}, "first_raised_at": T, "last_raised_at": T, "occurrences": 1, "escalation_level": 1}
    values.update(over)
    return Alert(**values)


def test_an_open_alert_is_an_active_flag_and_a_resolved_one_inactive() -> None:
    flag = flag_resource(alert(), SYSTEMS)
    assert_valid(flag)
    assert flag["status"] == "active" and flag["period"] == {"start": "2026-11-26T14:00:00Z"}
    assert flag["category"][0]["coding"][0]["code"] == "clinical"
    assert flag["code"]["coding"][0]["code"] == "flow_abnormal" and flag["author"]["display"]
    resolved = flag_resource(alert(status="resolved", resolved_at=T + timedelta(hours=2)), SYSTEMS)
    assert_valid(resolved)
    assert resolved["status"] == "inactive" and resolved["period"]["end"] == "2026-11-26T16:00:00Z"
    with pytest.raises(ValueError):
        flag_resource(alert(patient_mrn=None, kind="system_stale"), SYSTEMS)


def test_a_page_is_a_communication_about_its_flag() -> None:
    n = Notification(id="n-1", alert_id="al-1", level=1, channel="webhook", recipient="Dr On",
                     address="https://x", status="sent", attempts=1, created_at=T,
                     sent_at=T + timedelta(seconds=3))
    resource = communication_resource(n, alert(), SYSTEMS)
    assert_valid(resource)
    assert (resource["status"], resource["priority"], resource["sent"]) == \
        ("completed", "stat", "2026-11-26T14:00:03Z")
    assert resource["about"][0]["reference"] == "http://alr:8003/fhir/R4/Flag/al-1"
    failed = communication_resource(
        Notification(id="n-2", alert_id="al-1", level=1, channel="email", recipient="Dr On",
                     address="a@b", status="failed", attempts=5, created_at=T, error="refused"),
        alert(patient_mrn=None), SYSTEMS)
    assert_valid(failed)
    assert failed["status"] == "stopped" and "subject" not in failed and "sent" not in failed


# ----------------------------------------------------------------------------- plumbing

@pytest.mark.parametrize("key", ["MRN-1", "MRN_1", "a.b", "x:y#z", "SN.0001", "1.2.3",
                                 "3f2b8c1e-0000-4000-8000-000000000001", "Ü"])
def test_ids_map_keys_both_ways(key: str) -> None:
    resource_id = fhir_id(key)
    assert schema_errors({"resourceType": "Basic", "id": resource_id,
                          "code": {"text": "x"}}) == []
    assert key_of(resource_id) == key


@pytest.mark.parametrize("resource_id", ["a.5f", "a.", ".2", "a b", "x" * 65, "a.2E.2"])
def test_an_id_we_never_give_names_nothing(resource_id: str) -> None:
    assert key_of(resource_id) is None or fhir_id(key_of(resource_id) or "") == resource_id


@pytest.mark.parametrize(("value", "prefix", "start", "end"), [
    ("2026", "eq", datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ("ge2026-12", "ge", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ("lt2026-11-26", "lt", datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 11, 27, tzinfo=UTC)),
    ("le2026-11-26T14:00:00Z", "le", T, T + timedelta(microseconds=1)),
])
def test_date_parameters(value: str, prefix: str, start: datetime, end: datetime) -> None:
    assert date_range(value, "date") == (prefix, start, end)


@pytest.mark.parametrize("value", ["2026-11-26T14:00:00", "sa2026", "26-11-2026", "2026-13",
                                   "2026-02-30"])
def test_bad_date_parameters_name_the_parameter(value: str) -> None:
    with pytest.raises(Invalid) as caught:
        date_range(value, "date")
    assert caught.value.field == "date"


@pytest.mark.parametrize("status", [401, 403, 404, 422, 500])
def test_errors_are_valid_operation_outcomes(status: int) -> None:
    outcome = operation_outcome(status, "why", [{"field": "patient", "message": "bad"}]
                                if status == 422 else None)
    assert_valid(outcome)
    assert outcome["issue"][0]["code"] == {401: "login", 403: "forbidden", 404: "not-found",
                                           422: "invalid", 500: "exception"}[status]


def test_the_capability_statement_lists_what_is_declared() -> None:
    api = FhirApi("toy", "Toy")

    @api.read("Device")
    def read(resource_id: str) -> Any:
        return None

    @api.search("Device", [SearchParam("status", "token", "x")])
    def search() -> Any:
        return None

    statement = api.capability("http://toy/fhir/R4", T)
    assert_valid(statement)
    (resource,) = statement["rest"][0]["resource"]
    assert resource["interaction"] == [{"code": "read"}, {"code": "search-type"}]
    assert resource["searchParam"] == [{"name": "status", "type": "token", "documentation": "x"}]
