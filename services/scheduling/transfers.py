"""A patient's transfer to another centre: their open work moves with them, in the transaction
that changes the patient's centre, and the move is announced (`patient.center_changed`).

What moves: the implanted pumps scheduling knows of the patient, their scheduled appointments,
and their deliveries not yet administered (neither rejected nor cancelled), so that the new
centre's worklist shows the next refill and the sweep's refill alerts carry the new centre.
The therapy follows its patient (it has no centre of its own). What stays: the refills already
done (the registry counts them where they were done), completed and cancelled appointments,
administered or closed deliveries, explanted pumps.

The caller's unit of work is scoped to its token's centres: the patient was found there (the
old centre is covered, else 404) and the new centre was required (else 403); each row is read
through the ORM, so a row of a centre the token does not cover is never touched.
"""

from __future__ import annotations

from sqlalchemy import select

from services.scheduling.models import Appointment, Delivery, ImplantedPump, Patient, Therapy
from shared.contracts.scheduling import PatientCenterChangedData
from shared.contracts.vocabulary import AppointmentStatus, DeliveryStatus, PumpStatus
from shared.db import UnitOfWork

# a delivery whose bag may still go into the pump: not refused, not withdrawn, not yet used
CLOSED_DELIVERY_STATUSES = (DeliveryStatus.REJECTED, DeliveryStatus.CANCELLED)


def move_patient(uow: UnitOfWork, *, patient: Patient, to_center: str,
                 actor: str) -> PatientCenterChangedData | None:
    """Move the patient and their open work to `to_center`; audit and announce it. None when
    the patient is there already."""
    from_center = patient.center
    if to_center == from_center:
        return None
    now, session, mrn = uow.now(), uow.session, patient.mrn
    # first wait for a refill of the patient under way (it claims its appointment's row, or its
    # pump's): the reads below, statements of their own, then see the next appointment it wrote
    for locked in (select(ImplantedPump.serial_number).where(ImplantedPump.patient_mrn == mrn),
                   select(Appointment.id).where(Appointment.patient_mrn == mrn,
                                                Appointment.status == AppointmentStatus.SCHEDULED)):
        session.execute(locked.with_for_update())
    pumps = list(session.scalars(select(ImplantedPump).where(
        ImplantedPump.patient_mrn == mrn, ImplantedPump.status == PumpStatus.IMPLANTED)
        .order_by(ImplantedPump.serial_number).with_for_update()))
    appointments = list(session.scalars(select(Appointment).where(
        Appointment.patient_mrn == mrn, Appointment.status == AppointmentStatus.SCHEDULED)
        .order_by(Appointment.due_at, Appointment.id).with_for_update()))
    deliveries = list(session.scalars(select(Delivery).where(
        Delivery.patient_mrn == mrn, Delivery.administered_at.is_(None),
        Delivery.status.not_in(CLOSED_DELIVERY_STATUSES))
        .order_by(Delivery.id).with_for_update()))
    therapy_ids = list(session.scalars(select(Therapy.id).where(Therapy.patient_mrn == mrn)
                                       .order_by(Therapy.id)))
    rows: list[Patient | ImplantedPump | Appointment | Delivery] = [
        patient, *pumps, *appointments, *deliveries]
    for row in rows:
        row.center, row.updated_at = to_center, now
    session.flush()
    moved = PatientCenterChangedData(
        patient_mrn=mrn, center=to_center, from_center=from_center,
        pump_serials=[p.serial_number for p in pumps], therapy_ids=therapy_ids,
        appointment_ids=[a.id for a in appointments], delivery_ids=[d.id for d in deliveries],
        changed_by=actor, changed_at=now)
    uow.audit(actor=actor, action="patient.center_changed", entity_type="patient",
              entity_id=mrn, changes=moved.model_dump(mode="json", exclude={"changed_at"}))
    uow.publish(moved, subject=mrn)
    return moved
