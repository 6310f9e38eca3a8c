"""Scheduling's patients: registration and details (the weight and height that doses follow)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select

from services.scheduling.models import Patient
from services.scheduling.schemas import CenterRead, PatientCreate, PatientRead, PatientUpdate
from services.scheduling.transfers import move_patient
from shared.db import UnitOfWork
from shared.errors import Conflict, NotFound
from shared.pagination import Page, PageParams, paginate


def create_patient(*, uow: UnitOfWork, body: PatientCreate, actor: str) -> PatientRead:
    """Register a patient; 403 at a centre the token does not cover; 409 when the MRN is known."""
    uow.centers.require(body.center)
    if uow.session.get(Patient, body.mrn) is not None:
        raise Conflict("a patient with this MRN already exists")
    now = uow.now()
    patient = Patient(**body.model_dump(), created_at=now, updated_at=now)
    uow.session.add(patient)
    uow.session.flush()
    uow.audit(actor=actor, action="patient.created", entity_type="patient", entity_id=body.mrn,
              changes=body.model_dump(mode="json"))
    return PatientRead.model_validate(patient)


def get_patient_or_raise(*, uow: UnitOfWork, mrn: str) -> Patient:
    """The patient, or 404."""
    patient = uow.session.get(Patient, mrn)
    if patient is None:
        raise NotFound("no patient with this MRN")
    return patient


def get_patient(*, uow: UnitOfWork, mrn: str) -> PatientRead:
    """One patient."""
    return PatientRead.model_validate(get_patient_or_raise(uow=uow, mrn=mrn))


def update_patient(*, uow: UnitOfWork, mrn: str, body: PatientUpdate, actor: str) -> PatientRead:
    """Change a patient's details (e.g. a new weight: the next order's dose follows it); a new
    `center` transfers the patient with their open work (`transfers.move_patient`)."""
    patient = get_patient_or_raise(uow=uow, mrn=mrn)  # another centre's patient: 404
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if "center" in changes:  # a move to another centre: the token must cover that one too
        uow.centers.require(changes["center"])
    before = {k: getattr(patient, k) for k in changes}
    to_center = changes.pop("center", None)
    for key, value in changes.items():
        setattr(patient, key, value)
    if to_center is not None:
        move_patient(uow, patient=patient, to_center=to_center, actor=actor)
        changes["center"] = to_center
    patient.updated_at = uow.now()
    uow.session.flush()
    uow.audit(actor=actor, action="patient.updated", entity_type="patient", entity_id=mrn,
              changes={"before": before, "after": changes})
    return PatientRead.model_validate(patient)


def list_centers(*, uow: UnitOfWork, page: PageParams) -> Page[CenterRead]:
    """The centres scheduling knows (those of its patients), by code, with their patient counts."""
    stmt: Any = select(Patient.center, func.count().label("patients")).group_by(
        Patient.center)
    return paginate(uow.session, stmt, keys=[Patient.center], params=page, scalars=False,
                    to_item=lambda row: CenterRead(code=row.center, patients=row.patients))
def _like(text: str) -> str:
    """A LIKE pattern that matches `text` literally at the start."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def list_patients(*, uow: UnitOfWork, page: PageParams, q: str | None,
                  center: str | None) -> Page[PatientRead]:
    """Patients by family name, then MRN; `q` matches the start of the MRN, the family or the
    given name (case-insensitive)."""
    stmt = select(Patient)
    if center:
        stmt = stmt.where(Patient.center == center)
    if q and q.strip():
        pattern = _like(q.strip().lower())
        stmt = stmt.where(or_(func.lower(Patient.mrn).like(pattern, escape="\\"),
                              func.lower(Patient.family_name).like(pattern, escape="\\"),
                              func.lower(Patient.given_name).like(pattern, escape="\\")))
    return paginate(uow.session, stmt, keys=[Patient.family_name, Patient.mrn], params=page,
                    to_item=PatientRead.model_validate)
