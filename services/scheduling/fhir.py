"""Scheduling's FHIR R4 read API (CONTRACT.md, FHIR R4 read API): `Patient`, the refill
`Appointment`s, one flow `Observation` per measured flow, each pharmacy order as a
`MedicationRequest` and, once dispatched, a `MedicationDispense`.

The `*_resource` functions are the pure mappings (rows → resources); the routes only parse the
search, run one keyset query (as the JSON API's lists) and audit the patients read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Query, Request
from sqlalchemy import Select, and_, func, or_, select

from services.scheduling.centers import effective_settings
from services.scheduling.models import (
    Appointment,
    Delivery,
    DeliveryEvent,
    Patient,
    Refill,
)
from services.scheduling.settings import SchedulingSettings
from shared.audit import ReadAudit, ReadAuditDep
from shared.contracts.vocabulary import AppointmentStatus, DeliveryStatus, FillType, RefillStatus
from shared.db import UnitOfWork
from shared.errors import NotFound
from shared.fhir import (
    ATC,
    SNOMED,
    V2_0203,
    FhirApi,
    FhirPageDep,
    FhirResponse,
    SearchParam,
    Systems,
    coding,
    concept,
    date_conditions,
    fhir_id,
    instant,
    quantity,
    reference_key,
    resource_key,
    searchset,
    token_codes,
)
from shared.pagination import PageParams, paginate
from shared.web import RuntimeDep, UowDep

api = FhirApi("scheduling", "HAI scheduling")

OBSERVATION_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
INTERPRETATION_DISPLAY = {"H": "High", "L": "Low", "N": "Normal"}
# the drugs of a fill: official codes where one exists (SNOMED CT substances; floxuridine by
# its WHO ATC code), beside our own code (the pharmacy queue's `code`)
DRUG_CODINGS: dict[str, list[dict[str, Any]]] = {
    "floxuridine": [coding(ATC, "L01BC09", "floxuridine")],
    "dexamethasone": [coding(SNOMED, "372584003", "Dexamethasone (substance)")],
    "heparin": [coding(SNOMED, "372877000", "Heparin (substance)")],
}
SODIUM_CHLORIDE = coding(SNOMED, "387390002", "Sodium chloride (substance)")
# the pharmacy queue's units → UCUM (heparin's "units" are international units)
UCUM_UNITS = {"mg": "mg", "units": "[iU]", "mL": "mL", "g": "g", "ug": "ug"}
FILL_DISPLAY: dict[str, str] = {FillType.CHEMO: "Floxuridine (chemotherapy) fill",
                                FillType.SALINE: "Heparinized saline fill"}
# our statuses → FHIR's, for each resource
APPOINTMENT_STATUSES = ("proposed", "booked", "fulfilled", "cancelled")
REQUEST_STATUS: dict[str, str] = {DeliveryStatus.REQUESTED: "active", DeliveryStatus.ACCEPTED: "active",
                  DeliveryStatus.COMPOUNDED: "active", DeliveryStatus.DISPATCHED: "active",
                  DeliveryStatus.DELIVERED: "completed", DeliveryStatus.REJECTED: "cancelled",
                  DeliveryStatus.CANCELLED: "cancelled"}
# a dispense exists once one of these was applied
HANDED_OVER = (DeliveryStatus.DISPATCHED, DeliveryStatus.DELIVERED)
DISPENSE_STATUS: dict[str, str] = {
    DeliveryStatus.DISPATCHED: "in-progress", DeliveryStatus.DELIVERED: "completed",
    DeliveryStatus.CANCELLED: "stopped"}


# ------------------------------------------------------------------------- pure mappings

def patient_resource(p: Patient, systems: Systems) -> dict[str, Any]:
    """A patient, identified by the MRN in the centre's identifier system."""
    resource: dict[str, Any] = {
        "resourceType": "Patient", "id": fhir_id(p.mrn),
        "identifier": [{"use": "usual",
                        "type": concept(coding(V2_0203, "MR", "Medical record number")),
                        "system": systems.mrn_system(p.center), "value": p.mrn}],
        "active": True,
        "name": [{"use": "official", "family": p.family_name, "given": [p.given_name]}],
    }
    if p.sex in ("female", "male"):
        resource["gender"] = p.sex
    resource["birthDate"] = p.birth_date.isoformat()
    resource["managingOrganization"] = {"display": p.center}
    return resource


def appointment_status(a: Appointment) -> str:
    """proposed (due, not booked) | booked | fulfilled (refilled) | cancelled."""
    if a.status == AppointmentStatus.COMPLETED:
        return "fulfilled"
    if a.status == AppointmentStatus.CANCELLED:
        return "cancelled"
    return "booked" if a.scheduled_for is not None else "proposed"


def appointment_resource(a: Appointment, systems: Systems, window_days: int) -> dict[str, Any]:
    """A refill appointment: the fill type as `serviceType`, the booked time (else the due time)
    as `start`/`end`, the refill window as `requestedPeriod`, due time and its basis kept."""
    status = appointment_status(a)
    when = instant(a.scheduled_for or a.due_at)
    window = timedelta(days=window_days)
    extensions = [
        {"url": systems.extension("refill-due-at"), "valueDateTime": instant(a.due_at)},
        {"url": systems.extension("refill-due-basis"),
         "valueCoding": coding(systems.code_system("refill-due-basis"), a.due_basis)},
    ]
    if a.projected_empty_at is not None:
        extensions.append({"url": systems.extension("pump-projected-empty-at"),
                           "valueDateTime": instant(a.projected_empty_at)})
    # FHIR ParticipationStatus: the patient and pump are yet to confirm a proposed time
    participation = "needs-action" if status == "proposed" else "accepted"
    return {
        "resourceType": "Appointment", "id": fhir_id(a.id),
        "extension": extensions,
        "status": status,
        "serviceType": [concept(coding(systems.code_system("fill-type"), a.fill_type,
                                       FILL_DISPLAY.get(a.fill_type)),
                                text=f"HAI pump refill ({a.fill_type} fill)")],
        "description": f"HAI pump refill: {a.fill_type} fill",
        "start": when, "end": when,
        "created": instant(a.created_at),
        "requestedPeriod": [{"start": instant(a.due_at - window), "end": instant(a.due_at + window)}],
        "participant": [
            {"actor": systems.patient_ref(a.patient_mrn, a.center), "required": "required",
             "status": participation},
            {"actor": systems.device_ref(a.pump_serial), "required": "required",
             "status": participation},
        ],
    }


def interpretation(deviation_pct: float, band_pct: float) -> str:
    """H above the band, L below it, N within it (the band's edge is within)."""
    if deviation_pct > band_pct:
        return "H"
    if deviation_pct < -band_pct:
        return "L"
    return "N"


def observation_resource(r: Refill, systems: Systems, band_pct: float) -> dict[str, Any]:
    """One measured flow: the value in mL/d, the deviation and labeled flow as components,
    H/L/N against the ±band around the labeled flow, the pump as `device`."""
    if r.measured_flow_ml_per_day is None or r.flow_deviation_pct is None:
        raise ValueError("a refill without a measured flow is no flow observation")
    expected = r.expected_flow_ml_per_day
    flag = interpretation(r.flow_deviation_pct, band_pct)
    cs = systems.code_system("observation")
    resource: dict[str, Any] = {
        "resourceType": "Observation", "id": fhir_id(r.id),
        "status": "entered-in-error" if r.status == RefillStatus.ENTERED_IN_ERROR else "final",
        "code": concept(coding(cs, "pump-flow-rate", "Implanted infusion pump measured flow rate"),
                        text="measured pump flow"),
        "subject": systems.patient_ref(r.patient_mrn, r.center),
        "effectiveDateTime": instant(r.performed_at),
        "issued": instant(r.created_at),
        "valueQuantity": quantity(r.measured_flow_ml_per_day, "mL/d"),
        "interpretation": [concept(coding(OBSERVATION_INTERPRETATION, flag,
                                          INTERPRETATION_DISPLAY[flag]))],
        "device": systems.device_ref(r.pump_serial),
        "referenceRange": [{
            "low": quantity(expected * (1 - band_pct / 100), "mL/d"),
            "high": quantity(expected * (1 + band_pct / 100), "mL/d"),
            "text": f"labeled flow {expected:g} mL/d ± {band_pct:g} %",
        }],
        "component": [
            {"code": concept(coding(cs, "flow-deviation", "Deviation from the labeled flow rate")),
             "valueQuantity": quantity(r.flow_deviation_pct, "%")},
            {"code": concept(coding(cs, "labeled-flow-rate", "Labeled flow rate of the pump")),
             "valueQuantity": quantity(expected, "mL/d")},
            {"code": concept(coding(cs, "residual-volume", "Residual volume withdrawn")),
             "valueQuantity": quantity(r.residual_volume_ml, "mL")},
        ],
    }
    if r.elapsed_days is not None:
        resource["component"].append(
            {"code": concept(coding(cs, "elapsed-days", "Days since the previous fill")),
             "valueQuantity": quantity(r.elapsed_days, "d")})
    if r.status == RefillStatus.ENTERED_IN_ERROR:
        resource["note"] = [{"text": f"entered in error: {r.void_reason or 'no reason given'}"}]
    return resource


def _drug_concept(drug: dict[str, Any], systems: Systems) -> dict[str, Any]:
    code = str(drug.get("code"))
    return concept(*DRUG_CODINGS.get(code, []),
                   coding(systems.code_system("drug"), code, drug.get("name")),
                   text=str(drug.get("name") or code))


def _fill_medication(d: Delivery, systems: Systems, *, with_batch: bool) -> dict[str, Any]:
    """The fill as a contained Medication: each drug with its amount per fill volume, then the
    diluent."""
    fill_ml = d.order.get("fill_volume_ml")
    ingredients: list[dict[str, Any]] = []
    for drug in d.drugs:
        ingredient: dict[str, Any] = {"itemCodeableConcept": _drug_concept(drug, systems),
                                      "isActive": True}
        if fill_ml:
            unit = str(drug.get("unit"))
            ingredient["strength"] = {
                "numerator": quantity(float(drug["amount"]), UCUM_UNITS.get(unit, unit), unit),
                "denominator": quantity(float(fill_ml), "mL")}
        ingredients.append(ingredient)
    diluent = d.order.get("diluent")
    ingredients.append({"itemCodeableConcept": concept(SODIUM_CHLORIDE,
                                                       text=str(diluent or "0.9 % sodium chloride")),
                        "isActive": False})
    medication: dict[str, Any] = {
        "resourceType": "Medication", "id": "fill",
        "code": {"text": "HAI pump fill: " + ", ".join(
            f"{drug.get('name')} {drug.get('amount')} {drug.get('unit')}" for drug in d.drugs)
            + (f" in {diluent}" if diluent else "")},
        "ingredient": ingredients,
    }
    if with_batch and (d.lot or d.beyond_use_at):
        batch: dict[str, Any] = {}
        if d.lot:
            batch["lotNumber"] = d.lot
        if d.beyond_use_at:
            batch["expirationDate"] = instant(d.beyond_use_at)
        medication["batch"] = batch
    return medication


def _order_identifier(d: Delivery, systems: Systems) -> list[dict[str, Any]]:
    return [{"system": systems.identifier_system("pharmacy-order"), "value": d.id}]


def _last(history: Sequence[DeliveryEvent], statuses: Sequence[str]) -> DeliveryEvent | None:
    applied = [h for h in history if h.applied and h.status in statuses]
    return applied[-1] if applied else None


def medication_request_resource(d: Delivery, history: Sequence[DeliveryEvent],
                                systems: Systems) -> dict[str, Any]:
    """A pharmacy order: every drug with its amount in UCUM, each dose basis as the text of a
    dosage instruction, the fill volume and infusion days as the dispense request."""
    status = REQUEST_STATUS.get(d.status, "unknown")
    order = d.order
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest", "id": fhir_id(d.id),
        "contained": [_fill_medication(d, systems, with_batch=False)],
        "extension": [
            {"url": systems.extension("pharmacy-order-status"),
             "valueCoding": coding(systems.code_system("pharmacy-order-status"), d.status)},
            {"url": systems.extension("needed-by"), "valueDateTime": instant(d.needed_by)},
        ],
        "identifier": _order_identifier(d, systems),
        "status": status,
        "intent": "order",
        "medicationReference": {"reference": "#fill"},
        "subject": systems.patient_ref(d.patient_mrn, d.center),
        "supportingInformation": [{"reference": systems.url("scheduling", "Appointment",
                                                            d.appointment_id),
                                   "type": "Appointment"}],
        "authoredOn": instant(d.created_at),
        "dosageInstruction": [],
    }
    ended_by = (DeliveryStatus.REJECTED, DeliveryStatus.CANCELLED)
    ended = _last(history, ended_by) if d.status in ended_by else None
    if ended is not None and ended.reason:
        resource["statusReason"] = {"text": f"{ended.status}: {ended.reason}"}
    for sequence, drug in enumerate(d.drugs, start=1):
        unit = str(drug.get("unit"))
        resource["dosageInstruction"].append({
            "sequence": sequence,
            "text": f"{drug.get('name')} {drug.get('amount')} {unit}: {drug.get('basis')}",
            "route": {"text": "hepatic arterial infusion (implanted pump)"},
            "doseAndRate": [{"doseQuantity": quantity(float(drug["amount"]),
                                                      UCUM_UNITS.get(unit, unit), unit)}],
        })
    dispense: dict[str, Any] = {}
    if order.get("fill_volume_ml"):
        dispense["quantity"] = quantity(float(order["fill_volume_ml"]), "mL")
    if order.get("infusion_days"):
        dispense["expectedSupplyDuration"] = quantity(float(order["infusion_days"]), "d", "days")
    if dispense:
        resource["dispenseRequest"] = dispense
    if not resource["dosageInstruction"]:
        del resource["dosageInstruction"]
    return resource


def _first(history: Sequence[DeliveryEvent], statuses: Sequence[str]) -> DeliveryEvent | None:
    return next((h for h in history if h.applied and h.status in statuses), None)


def dispensed(history: Sequence[DeliveryEvent]) -> bool:
    """Whether the pharmacy handed the order over (dispatched or delivered, applied)."""
    return _last(history, HANDED_OVER) is not None


def medication_dispense_resource(d: Delivery, history: Sequence[DeliveryEvent],
                                 systems: Systems) -> dict[str, Any]:
    """An order once dispatched: the bag's lot and beyond-use time, when it was compounded and
    handed over."""
    handed = _first(history, HANDED_OVER)  # when the bag left the pharmacy
    if handed is None:
        raise ValueError("an order not dispatched has no dispense")
    status = DISPENSE_STATUS.get(d.status, "unknown")
    resource: dict[str, Any] = {
        "resourceType": "MedicationDispense", "id": fhir_id(d.id),
        "contained": [_fill_medication(d, systems, with_batch=True)],
        "identifier": _order_identifier(d, systems),
        "status": status,
        "medicationReference": {"reference": "#fill"},
        "subject": systems.patient_ref(d.patient_mrn, d.center),
        "authorizingPrescription": [{"reference": systems.url("scheduling", "MedicationRequest",
                                                              d.id),
                                     "type": "MedicationRequest"}],
    }
    if d.order.get("fill_volume_ml"):
        resource["quantity"] = quantity(float(d.order["fill_volume_ml"]), "mL")
    prepared = _last(history, (DeliveryStatus.COMPOUNDED,))
    if prepared is not None and prepared.at <= handed.at:  # mdd-1: never handed over before
        resource["whenPrepared"] = instant(prepared.at)
    resource["whenHandedOver"] = instant(handed.at)
    return resource


# ------------------------------------------------------------------------- routes

def _systems(runtime: Any) -> Systems:
    return Systems.from_settings(runtime.settings)


def _one(uow: UowDep, model: Any, resource_id: str, resource_type: str) -> Any:
    row = uow.session.get(model, resource_key(resource_id, resource_type))
    if row is None:
        raise NotFound(f"no {resource_type} {resource_id}")
    return row


def _history(uow: UowDep, ids: Sequence[str]) -> dict[str, list[DeliveryEvent]]:
    out: dict[str, list[DeliveryEvent]] = {i: [] for i in ids}
    if ids:
        for row in uow.session.scalars(select(DeliveryEvent)
                                       .where(DeliveryEvent.delivery_id.in_(ids))
                                       .order_by(DeliveryEvent.id)):
            out[row.delivery_id].append(row)
    return out


def _patient_filter(column: Any, patient: str | None) -> list[Any]:
    return [] if patient is None else [column == reference_key(patient, "Patient", "patient")]


def _audit(audit: ReadAudit, rows: Sequence[Any]) -> None:
    audit.record((r.patient_mrn, r.id) for r in rows)


PATIENT_PARAM = SearchParam("patient", "reference", "the patient (`Patient/MRN` or the MRN)")
DateParam = Annotated[list[str] | None, Query()]


@api.read("Patient")
def read_patient(resource_id: str, uow: UowDep, audit: ReadAuditDep,
                 runtime: RuntimeDep) -> FhirResponse:
    """A patient by MRN (the read is audited)."""
    p = _one(uow, Patient, resource_id, "Patient")
    audit.record([(p.mrn, p.mrn)])
    return FhirResponse(patient_resource(p, _systems(runtime)))


@api.read("Appointment")
def read_appointment(resource_id: str, uow: UowDep, audit: ReadAuditDep,
                     runtime: RuntimeDep) -> FhirResponse:
    """A refill appointment (the read is audited)."""
    a = _one(uow, Appointment, resource_id, "Appointment")
    _audit(audit, [a])
    return FhirResponse(appointment_resource(a, _systems(runtime), _window(uow, runtime, a)))


@api.search("Appointment", [
    PATIENT_PARAM,
    SearchParam("date", "date", "the appointment's start: the booked time, else the due time "
                                "(prefixes eq, gt, ge, lt, le; repeat to bound both ends)"),
    SearchParam("status", "token", "proposed (due, not booked) | booked | fulfilled | cancelled; "
                                   "comma: any of them"),
], documentation="Refill appointments, by due time.")
def search_appointments(request: Request, uow: UowDep, audit: ReadAuditDep, runtime: RuntimeDep,
                        page: FhirPageDep, patient: str | None = None, date: DateParam = None,
                        status: str | None = None) -> FhirResponse:
    """Refill appointments matching every parameter given, by due time."""
    stmt: Select[Any] = select(Appointment).where(
        *_patient_filter(Appointment.patient_mrn, patient),
        *date_conditions(func.coalesce(Appointment.scheduled_for, Appointment.due_at), date,
                         "date"))
    codes = token_codes(status, APPOINTMENT_STATUSES, "status")
    if codes is not None:
        stmt = stmt.where(or_(*[_appointment_status_is(c) for c in codes]))
    found = paginate(uow.session, stmt, keys=[Appointment.due_at, Appointment.id], params=page,
                     to_item=lambda a: a)
    _audit(audit, found.items)
    systems = _systems(runtime)
    return searchset(request, [appointment_resource(a, systems, _window(uow, runtime, a))
                               for a in found.items], found.next_cursor)


def _appointment_status_is(code: str) -> Any:
    if code == "fulfilled":
        return Appointment.status == AppointmentStatus.COMPLETED.value
    if code == "cancelled":
        return Appointment.status == AppointmentStatus.CANCELLED.value
    booked = Appointment.scheduled_for.is_not(None) if code == "booked" \
        else Appointment.scheduled_for.is_(None)
    return and_(Appointment.status == AppointmentStatus.SCHEDULED.value, booked)


def _window(uow: UnitOfWork, runtime: Any, a: Appointment) -> int:
    """The refill window (± days) of the appointment's centre (centre settings)."""
    return effective_settings(uow, runtime.settings, a.center).refill_window_days


def _band(uow: UnitOfWork, settings: SchedulingSettings, r: Refill) -> float:
    """The flow warning band of the refill's centre (centre settings)."""
    return effective_settings(uow, settings, r.center).flow_warning_pct


@api.read("Observation")
def read_observation(resource_id: str, uow: UowDep, audit: ReadAuditDep,
                     runtime: RuntimeDep) -> FhirResponse:
    """One measured flow (a refill that measured one; the read is audited)."""
    r = _one(uow, Refill, resource_id, "Observation")
    if r.measured_flow_ml_per_day is None:
        raise NotFound(f"no Observation {resource_id}")
    _audit(audit, [r])
    return FhirResponse(observation_resource(r, _systems(runtime), _band(uow, runtime.settings, r)))


@api.search("Observation", [
    PATIENT_PARAM,
    SearchParam("device", "reference", "the pump (`Device/serial` or the serial number)"),
    SearchParam("date", "date", "when the flow was measured (the refill's time; prefixes eq, "
                                "gt, ge, lt, le; repeat to bound both ends)"),
], documentation="Measured pump flows, one per refill that measured one, oldest first; "
                 "keyset-paged (constant time per page).")
def search_observations(request: Request, uow: UowDep, audit: ReadAuditDep, runtime: RuntimeDep,
                        page: FhirPageDep, patient: str | None = None, device: str | None = None,
                        date: DateParam = None) -> FhirResponse:
    """Measured flows matching every parameter given, oldest first."""
    stmt: Select[Any] = select(Refill).where(
        Refill.measured_flow_ml_per_day.is_not(None),
        *_patient_filter(Refill.patient_mrn, patient),
        *date_conditions(Refill.performed_at, date, "date"))
    if device is not None:
        stmt = stmt.where(Refill.pump_serial == reference_key(device, "Device", "device"))
    found = paginate(uow.session, stmt, keys=[Refill.performed_at, Refill.id], params=page,
                     to_item=lambda r: r)
    _audit(audit, found.items)
    systems = _systems(runtime)
    return searchset(request, [observation_resource(r, systems, _band(uow, runtime.settings, r))
                               for r in found.items], found.next_cursor)


@api.read("MedicationRequest")
def read_medication_request(resource_id: str, uow: UowDep, audit: ReadAuditDep,
                            runtime: RuntimeDep) -> FhirResponse:
    """A pharmacy order (the read is audited)."""
    d = _one(uow, Delivery, resource_id, "MedicationRequest")
    _audit(audit, [d])
    return FhirResponse(medication_request_resource(d, _history(uow, [d.id])[d.id],
                                                    _systems(runtime)))


@api.search("MedicationRequest", [
    PATIENT_PARAM,
    SearchParam("status", "token", "active (requested to dispatched) | completed (delivered) | "
                                   "cancelled (rejected or cancelled); comma: any of them"),
], documentation="Pharmacy orders, by needed-by time.")
def search_medication_requests(request: Request, uow: UowDep, audit: ReadAuditDep,
                               runtime: RuntimeDep, page: FhirPageDep,
                               patient: str | None = None,
                               status: str | None = None) -> FhirResponse:
    """Pharmacy orders matching every parameter given, by needed-by time."""
    stmt: Select[Any] = select(Delivery).where(*_patient_filter(Delivery.patient_mrn, patient))
    return _orders_bundle(request, uow, audit, runtime, page, stmt, status, REQUEST_STATUS,
                          medication_request_resource)


def _orders_bundle(request: Request, uow: UowDep, audit: ReadAudit, runtime: Any,
                   page: PageParams, stmt: Select[Any], status: str | None,
                   fhir_status: dict[str, str], to_resource: Any) -> FhirResponse:
    """One page of pharmacy orders, by needed-by time, as resources: `status` holds FHIR codes
    (`fhir_status` maps ours to them)."""
    codes = token_codes(status, tuple(dict.fromkeys(fhir_status.values())), "status")
    if codes is not None:
        stmt = stmt.where(Delivery.status.in_([ours for ours, fhir in fhir_status.items()
                                               if fhir in codes]))
    found = paginate(uow.session, stmt, keys=[Delivery.needed_by, Delivery.id], params=page,
                     to_item=lambda d: d)
    _audit(audit, found.items)
    history, systems = _history(uow, [d.id for d in found.items]), _systems(runtime)
    return searchset(request, [to_resource(d, history[d.id], systems) for d in found.items],
                     found.next_cursor)


def _handed_over() -> Any:
    return Delivery.id.in_(select(DeliveryEvent.delivery_id).where(
        DeliveryEvent.status.in_(HANDED_OVER), DeliveryEvent.applied.is_(True)))


@api.read("MedicationDispense")
def read_medication_dispense(resource_id: str, uow: UowDep, audit: ReadAuditDep,
                             runtime: RuntimeDep) -> FhirResponse:
    """A dispatched order (the read is audited); 404 before the pharmacy dispatched it."""
    d = _one(uow, Delivery, resource_id, "MedicationDispense")
    history = _history(uow, [d.id])[d.id]
    if not dispensed(history):
        raise NotFound(f"no MedicationDispense {resource_id}")
    _audit(audit, [d])
    return FhirResponse(medication_dispense_resource(d, history, _systems(runtime)))


@api.search("MedicationDispense", [
    PATIENT_PARAM,
    SearchParam("status", "token", "in-progress (dispatched) | completed (delivered) | stopped "
                                   "(cancelled after dispatch); comma: any of them"),
], documentation="Orders the pharmacy dispatched, by needed-by time.")
def search_medication_dispenses(request: Request, uow: UowDep, audit: ReadAuditDep,
                                runtime: RuntimeDep, page: FhirPageDep,
                                patient: str | None = None,
                                status: str | None = None) -> FhirResponse:
    """Dispatched orders matching every parameter given, by needed-by time."""
    stmt: Select[Any] = select(Delivery).where(_handed_over(),
                                               *_patient_filter(Delivery.patient_mrn, patient))
    return _orders_bundle(request, uow, audit, runtime, page, stmt, status, DISPENSE_STATUS,
                          medication_dispense_resource)


__all__ = ["api", "appointment_resource", "interpretation", "medication_dispense_resource",
           "medication_request_resource", "observation_resource", "patient_resource"]
