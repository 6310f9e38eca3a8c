"""Scheduling's HTTP API (thin: parse, call the service, shape the answer)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from services.scheduling import (
    appointments,
    centers,
    deliveries,
    patients,
    refills,
    reports,
    therapies,
)
from services.scheduling.schemas import (
    AppointmentBook,
    AppointmentRead,
    CenterRead,
    CenterSettingsRead,
    CenterSettingsUpdate,
    DeliveryRead,
    DeliveryStatusIn,
    FlowReadingsPage,
    NextOrderRead,
    PatientCreate,
    PatientRead,
    PatientUpdate,
    RefillCreate,
    RefillRead,
    RefillVoid,
    TherapyCreate,
    TherapyRead,
    TherapyUpdate,
)
from shared.audit import Admin, AuditEntry, ReadAuditDep
from shared.auth import CurrentUser, Principal, require_roles
from shared.contracts.vocabulary import AppointmentStatus, DeliveryStatus, TherapyStatus
from shared.errors import problem
from shared.idempotency import IdempotencyDep
from shared.pagination import Page, PageDep
from shared.reports import FormatParam, FromParam, ToParam, answer, period
from shared.schemas import Timestamp
from shared.text import Centre, Key
from shared.web import RuntimeDep, UnitOfWorkRoute, UowDep

router = APIRouter(route_class=UnitOfWorkRoute)

Clinician = Annotated[Principal, Depends(require_roles("nurse", "oncologist"))]
Oncologist = Annotated[Principal, Depends(require_roles("oncologist"))]
Nurse = Annotated[Principal, Depends(require_roles("nurse"))]
Pharmacist = Annotated[Principal, Depends(require_roles("pharmacist"))]


# ---------------------------------------------------------------- patients

@router.post("/patients", status_code=201, response_model=PatientRead, tags=["patients"])
def create_patient(body: PatientCreate, user: Clinician, uow: UowDep,
                   idem: IdempotencyDep) -> Response:
    """Register a patient (nurse, oncologist)."""
    return idem.run(uow, body, lambda: patients.create_patient(uow=uow, body=body, actor=user.sub))


@router.get("/patients", tags=["patients"])
def list_patients(uow: UowDep, audit: ReadAuditDep, page: PageDep, q: Key | None = None,
                  center: Key | None = None) -> Page[PatientRead]:
    """Patients by family name, then MRN; `q` matches the start of the MRN, family or given name
    (case-insensitive); the patients read are audited."""
    return audit.page(patients.list_patients(uow=uow, page=page, q=q, center=center),
                      mrn=lambda p: p.mrn, ident=lambda p: p.mrn)


@router.get("/patients/{mrn}", tags=["patients"])
def get_patient(mrn: Key, uow: UowDep, audit: ReadAuditDep) -> PatientRead:
    """One patient (the read is audited)."""
    return audit.item(patients.get_patient(uow=uow, mrn=mrn), mrn=lambda p: p.mrn,
                      ident=lambda p: p.mrn)


@router.patch("/patients/{mrn}", tags=["patients"])
def update_patient(mrn: Key, body: PatientUpdate, user: Clinician, uow: UowDep) -> PatientRead:
    """Change a patient's details, e.g. a new weight (nurse, oncologist). A new `center`
    transfers the patient: their implanted pump, scheduled appointments and deliveries not yet
    administered move too (past refills stay), announced as `patient.center_changed`; the
    token must cover both centres."""
    return patients.update_patient(uow=uow, mrn=mrn, body=body, actor=user.sub)


@router.get("/centers", tags=["patients"])
def list_centers(_: CurrentUser, uow: UowDep, page: PageDep) -> Page[CenterRead]:
    """The centres of the patients scheduling knows, by code (what a centre filter offers)."""
    return patients.list_centers(uow=uow, page=page)


# ---------------------------------------------------------------- therapies

@router.post("/therapies", status_code=201, response_model=TherapyRead, tags=["therapies"])
def create_therapy(body: TherapyCreate, user: Oncologist, uow: UowDep, runtime: RuntimeDep,
                   idem: IdempotencyDep) -> Response:
    """Start a therapy and schedule its first fill (oncologist); 409 if scheduling has not seen
    the pump implanted in that patient."""
    return idem.run(uow, body, lambda: therapies.create_therapy(
        uow=uow, body=body, actor=user.sub, settings=runtime.settings))


@router.get("/therapies", tags=["therapies"])
def list_therapies(uow: UowDep, audit: ReadAuditDep, page: PageDep,
                   patient_mrn: Key | None = None,
                   status: TherapyStatus | None = None) -> Page[TherapyRead]:
    """Therapies, newest first (the patients read are audited)."""
    return audit.page(therapies.list_therapies(uow=uow, page=page, patient_mrn=patient_mrn,
                                               status=status))


@router.get("/therapies/{therapy_id}", tags=["therapies"])
def get_therapy(therapy_id: Key, uow: UowDep, audit: ReadAuditDep) -> TherapyRead:
    """One therapy (the read is audited)."""
    return audit.item(therapies.get_therapy(uow=uow, therapy_id=therapy_id))


@router.get("/therapies/{therapy_id}/next-order", tags=["therapies"])
def next_order(therapy_id: Key, uow: UowDep, audit: ReadAuditDep,
               runtime: RuntimeDep) -> NextOrderRead:
    """The drugs of the therapy's next chemo fill as scheduling would order them now (the
    current weight, dose and flow), each with its basis, or the reason the order would be
    refused; the read is audited."""
    return audit.item(therapies.next_order(uow=uow, therapy_id=therapy_id,
                                           settings=runtime.settings), ident=lambda r: r.therapy_id)


@router.patch("/therapies/{therapy_id}", tags=["therapies"])
def update_therapy(therapy_id: Key, body: TherapyUpdate, user: Oncologist, uow: UowDep,
                   runtime: RuntimeDep) -> TherapyRead:
    """`{"action": "pause" | "resume" | "stop", "reason"?}` and/or new dosing settings
    (oncologist). Pause cancels open pharmacy orders and orders nothing until resumed
    (appointments stay: the pump must not run dry); stop cancels open appointments and orders."""
    return therapies.update_therapy(uow=uow, therapy_id=therapy_id, body=body, actor=user.sub,
                                    settings=runtime.settings)


# ---------------------------------------------------------------- appointments

@router.get("/appointments", tags=["appointments"])
def list_appointments(
    uow: UowDep, audit: ReadAuditDep, page: PageDep, runtime: RuntimeDep,
    status: AppointmentStatus | None = None,
    due_before: Annotated[Timestamp | None, Query()] = None,
    center: Key | None = None,
    patient_mrn: Key | None = None,
) -> Page[AppointmentRead]:
    """The nurses' worklist, ordered by due time (no `status`: every status); the patients
    read are audited."""
    return audit.page(appointments.list_appointments(
        uow=uow, page=page, status=status, due_before=due_before, center=center,
        patient_mrn=patient_mrn, settings=runtime.settings))


@router.get("/appointments/{appointment_id}", tags=["appointments"])
def get_appointment(appointment_id: Key, uow: UowDep, audit: ReadAuditDep,
                    runtime: RuntimeDep) -> AppointmentRead:
    """One appointment (the read is audited)."""
    return audit.item(appointments.get_appointment(uow=uow, appointment_id=appointment_id,
                                                   settings=runtime.settings))


@router.patch("/appointments/{appointment_id}", tags=["appointments"])
def book_appointment(appointment_id: Key, body: AppointmentBook, user: Nurse,
                     uow: UowDep, runtime: RuntimeDep) -> AppointmentRead:
    """Book `scheduled_for` (nurse)."""
    return appointments.book_appointment(uow=uow, appointment_id=appointment_id, body=body,
                                         actor=user.sub, settings=runtime.settings)


# ---------------------------------------------------------------- refills and flow

@router.post("/refills", status_code=201, response_model=RefillRead, tags=["refills"])
def record_refill(body: RefillCreate, user: Nurse, uow: UowDep, runtime: RuntimeDep,
                  idem: IdempotencyDep) -> Response:
    """Record a refill (nurse): flow figures, the appointment completed and the next one."""
    return idem.run(uow, body, lambda: refills.record_refill(
        uow=uow, body=body, actor=user.sub, settings=runtime.settings))


@router.post("/refills/{refill_id}/entered-in-error", tags=["refills"])
def void_refill(refill_id: str, body: RefillVoid, user: Clinician, uow: UowDep,
                runtime: RuntimeDep) -> RefillRead:
    """Mark the latest refill of a pump entered in error, with the reason (nurse, oncologist):
    it stays for the audit, leaves the flow series and every figure, cancels the appointment it
    created and opens again the one it completed. 409 when it is not the pump's latest refill
    (the answer names the latest) or is already entered in error."""
    return refills.void_refill(uow=uow, refill_id=refill_id, body=body, actor=user.sub,
                               settings=runtime.settings)


@router.get("/refills", tags=["refills"])
def list_refills(uow: UowDep, audit: ReadAuditDep, page: PageDep, runtime: RuntimeDep,
                 pump_serial: Key | None = None,
                 patient_mrn: Key | None = None) -> Page[RefillRead]:
    """Refills, newest first (the patients read are audited)."""
    return audit.page(refills.list_refills(uow=uow, page=page, pump_serial=pump_serial,
                                           patient_mrn=patient_mrn, settings=runtime.settings))


@router.get("/refills/{refill_id}", tags=["refills"])
def get_refill(refill_id: Key, uow: UowDep, audit: ReadAuditDep, runtime: RuntimeDep) -> RefillRead:
    """One refill (the read is audited)."""
    return audit.item(refills.get_refill(uow=uow, refill_id=refill_id, settings=runtime.settings))


@router.get("/pumps/{serial}/flow-readings", tags=["refills"])
def flow_readings(serial: Key, _: CurrentUser, uow: UowDep, page: PageDep,
                  runtime: RuntimeDep) -> FlowReadingsPage:
    """The measured flow series of a pump, oldest first, and the trend of its last readings."""
    return refills.flow_readings(uow=uow, pump_serial=serial, page=page, settings=runtime.settings)


# ---------------------------------------------------------------- deliveries

@router.get("/deliveries", tags=["deliveries"])
def list_deliveries(uow: UowDep, audit: ReadAuditDep, page: PageDep,
                    status: DeliveryStatus | None = None,
                    patient_mrn: Key | None = None) -> Page[DeliveryRead]:
    """Drug delivery orders, by needed-by time (the patients read are audited)."""
    return audit.page(deliveries.list_deliveries(uow=uow, page=page, status=status,
                                                 patient_mrn=patient_mrn))


@router.get("/deliveries/{delivery_id}", tags=["deliveries"])
def get_delivery(delivery_id: Key, uow: UowDep, audit: ReadAuditDep) -> DeliveryRead:
    """One delivery (its id is the pharmacy's order_id) with its history; the read is audited."""
    return audit.item(deliveries.get_delivery(uow=uow, delivery_id=delivery_id))


@router.post("/deliveries/{delivery_id}/status", tags=["deliveries"], response_model=DeliveryRead)
def delivery_status(delivery_id: Key, body: DeliveryStatusIn, user: Pharmacist,
                    uow: UowDep) -> DeliveryRead | JSONResponse:
    """The HTTP twin of the pharmacy's status message (pharmacist). A repeat changes nothing;
    a status that would move the order backwards is recorded in its history and answered 409."""
    result, decision = deliveries.apply_status(
        uow, order_id=delivery_id, status=body.status, at=body.at, reason=body.reason,
        lot=body.lot, beyond_use_at=body.beyond_use_at, source="http", actor=user.sub)
    if decision == "late":
        # answered, not raised: the late status stays in the order's history (a raise would
        # roll the request's transaction back)
        return problem(409, f"order is already {result.status}; {body.status} recorded, "
                            "not applied", current_status=result.status)
    return result


# ---------------------------------------------------------------- centre settings

@router.get("/centers/{center}/settings", tags=["centres"])
def get_center_settings(center: Centre, _: CurrentUser, uow: UowDep,
                        runtime: RuntimeDep) -> CenterSettingsRead:
    """A centre's effective settings, each with where it comes from (its own value, or the
    system default with its variable and source)."""
    return centers.get(uow=uow, center=center, settings=runtime.settings)


@router.put("/centers/{center}/settings", tags=["centres"])
def put_center_settings(center: Centre, body: CenterSettingsUpdate, user: Admin, uow: UowDep,
                        runtime: RuntimeDep) -> CenterSettingsRead:
    """Replace a centre's own settings (admin); a field left out or null falls back to the
    default. Audited, announced as `center.settings_changed`, applied without a restart."""
    return centers.update(uow=uow, center=center, body=body, actor=user.sub,
                          settings=runtime.settings)


@router.get("/centers/{center}/settings/history", tags=["centres"])
def center_settings_history(center: Centre, _: CurrentUser, uow: UowDep,
                            page: PageDep) -> Page[AuditEntry]:
    """Every change of a centre's settings, newest first: who, when, before and after."""
    return centers.history(uow=uow, center=center, page=page)


# ---------------------------------------------------------------- the registry

@router.get("/reports/refills", tags=["reports"], response_model=reports.RefillReport,
            responses={200: {"content": {"text/csv": {}}}})
def refill_report(request: Request, _: CurrentUser, uow: UowDep, runtime: RuntimeDep,
                  from_month: FromParam = None, to_month: ToParam = None,
                  center: Centre | None = None,
                  format: FormatParam = None) -> Response | reports.RefillReport:
    """Per centre and per month: refills done, share on time, hours overdue (median, p90),
    share of abnormal readings, deliveries late; with the consortium's rows (`center` `*`).
    JSON, or CSV with `Accept: text/csv` or `?format=csv`."""
    start, end = period(from_month, to_month, now=uow.now())
    report = reports.refill_report(uow=uow, start=start, end=end, center=center,
                                   settings=runtime.settings)
    return answer(request, format, report, rows="rows", columns=reports.COLUMNS,
                  filename=f"refills-{report.from_month}-{report.to_month}")
