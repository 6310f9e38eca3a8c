"""Inventory's FHIR R4 read API: pumps as `Device` (CONTRACT.md, FHIR R4 read API).

`device_resource` is the pure mapping (a pump and its model → a Device); the routes below only
parse the search, run the query (keyset by serial number, as `GET /v1/pumps`) and audit the
patients read.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from sqlalchemy import Select, false, select

from services.inventory.lifecycle import PumpStatus
from services.inventory.models import Pump, PumpModel
from services.inventory.udi import human_readable
from shared.audit import ReadAuditDep
from shared.errors import NotFound
from shared.fhir import (
    FhirApi,
    FhirPageDep,
    FhirResponse,
    SearchParam,
    Systems,
    base64_text,
    coding,
    concept,
    fhir_id,
    quantity,
    reference_key,
    resource_key,
    searchset,
    token,
    token_codes,
)
from shared.pagination import paginate
from shared.web import RuntimeDep, UowDep

api = FhirApi("inventory", "HAI inventory")

GS1_ISSUER = "http://hl7.org/fhir/NamingSystem/gs1-di"
# FHIR Device.status (active | inactive | entered-in-error | unknown) of each lifecycle status:
# a pump in stock or implanted is in use or available; every other one is out of use
DEVICE_STATUS = {
    PumpStatus.IN_STOCK: "active", PumpStatus.IMPLANTED: "active",
    PumpStatus.QUARANTINED: "inactive", PumpStatus.EXPLANTED: "inactive",
    PumpStatus.RETIRED: "inactive",
}
DEVICE_STATUSES = ("active", "inactive", "entered-in-error", "unknown")


def device_resource(pump: Pump, model: PumpModel | None, systems: Systems) -> dict[str, Any]:
    """A pump as a FHIR Device: UDI carrier, serial, lot, expiry, status, the patient while
    implanted, the labeled flow and the lifecycle status as properties."""
    status = PumpStatus(pump.status)
    resource: dict[str, Any] = {
        "resourceType": "Device",
        "id": fhir_id(pump.serial_number),
        "identifier": [{"system": systems.identifier_system("pump-serial"),
                        "value": pump.serial_number}],
    }
    if pump.gtin:
        carrier: dict[str, Any] = {
            "deviceIdentifier": pump.gtin, "issuer": GS1_ISSUER,
            "carrierHRF": human_readable(pump.gtin, pump.expiry_date, pump.lot_number,
                                         pump.serial_number),
            "entryType": "barcode" if pump.udi_aidc else "manual",
        }
        if pump.udi_aidc:
            carrier["carrierAIDC"] = base64_text(pump.udi_aidc)
        resource["udiCarrier"] = [carrier]
    resource["status"] = DEVICE_STATUS[status]
    if model is not None:
        resource["manufacturer"] = model.manufacturer
        resource["deviceName"] = [{"name": model.name, "type": "manufacturer-name"}]
    resource["modelNumber"] = pump.model_code
    resource["expirationDate"] = pump.expiry_date.isoformat()
    if pump.lot_number:
        resource["lotNumber"] = pump.lot_number
    resource["serialNumber"] = pump.serial_number
    resource["property"] = [
        {"type": concept(coding(systems.code_system("device-property"), "labeled-flow-rate",
                                "Labeled flow rate"), text="labeled flow"),
         "valueQuantity": [quantity(pump.labeled_flow_ml_per_day, "mL/d")]},
        {"type": concept(coding(systems.code_system("device-property"), "reservoir-volume",
                                "Reservoir volume"), text="reservoir"),
         "valueQuantity": [quantity(pump.reservoir_ml, "mL")]},
        {"type": concept(coding(systems.code_system("device-property"), "lifecycle-status",
                                "Lifecycle status"), text="lifecycle status"),
         "valueCode": [concept(coding(systems.code_system("pump-status"), status.value))]},
    ]
    if status is PumpStatus.IMPLANTED and pump.patient_mrn:
        resource["patient"] = systems.patient_ref(pump.patient_mrn, pump.center)
    if pump.location:
        resource["note"] = [{"text": f"location: {pump.location}"}]
    return resource


def _statuses(fhir_statuses: list[str]) -> list[str]:
    return [s.value for s, fhir in DEVICE_STATUS.items() if fhir in fhir_statuses]


@api.read("Device")
def read_device(resource_id: str, uow: UowDep, audit: ReadAuditDep,
                runtime: RuntimeDep) -> FhirResponse:
    """A pump by its serial number (the read of its patient, if implanted, is audited)."""
    serial = resource_key(resource_id, "Device")
    row = uow.session.execute(select(Pump, PumpModel).join(PumpModel, isouter=True)
                              .where(Pump.serial_number == serial)).first()
    if row is None:
        raise NotFound(f"no Device {resource_id}")
    pump, model = row
    audit.record([(_implanted_patient(pump), pump.serial_number)])
    return FhirResponse(device_resource(pump, model, Systems.from_settings(runtime.settings)))


@api.search("Device", [
    SearchParam("identifier", "token", "the pump's serial number (`[system|]serial`)"),
    SearchParam("patient", "reference", "the patient the pump is implanted in (`Patient/MRN`)"),
    SearchParam("status", "token", "active (in stock or implanted) | inactive (quarantined, "
                                    "explanted, retired); comma: any of them"),
], documentation="Pumps, by serial number.")
def search_devices(request: Request, uow: UowDep, audit: ReadAuditDep, runtime: RuntimeDep,
                   page: FhirPageDep, identifier: str | None = None, patient: str | None = None,
                   status: str | None = None) -> FhirResponse:
    """Pumps matching every parameter given, by serial number."""
    systems = Systems.from_settings(runtime.settings)
    stmt: Select[Any] = select(Pump)
    if identifier is not None:
        system, value = token(identifier)
        if system not in (None, "", systems.identifier_system("pump-serial")):
            stmt = stmt.where(false())  # an identifier of another system names none of ours
        stmt = stmt.where(Pump.serial_number == value)
    if patient is not None:
        stmt = stmt.where(Pump.patient_mrn == reference_key(patient, "Patient", "patient"),
                          Pump.status == PumpStatus.IMPLANTED.value)
    codes = token_codes(status, DEVICE_STATUSES, "status")
    if codes is not None:
        stmt = stmt.where(Pump.status.in_(_statuses(codes)))
    found = paginate(uow.session, stmt, keys=[Pump.serial_number], params=page,
                     to_item=lambda p: p)
    codes_used = {p.model_code for p in found.items}
    models = {m.code: m for m in uow.session.scalars(
        select(PumpModel).where(PumpModel.code.in_(codes_used)))} if codes_used else {}
    audit.record((_implanted_patient(p), p.serial_number) for p in found.items)
    return searchset(request, [device_resource(p, models.get(p.model_code), systems)
                               for p in found.items], found.next_cursor)


def _implanted_patient(pump: Pump) -> str | None:
    return pump.patient_mrn if pump.status == PumpStatus.IMPLANTED.value else None
