"""A patient's transfer (scheduling's `patient.center_changed`): their open alerts move to the new
centre, so that its on-call is paged (now, on escalation, on re-notify) and its users see them,
and the old centre's no longer do."""

from __future__ import annotations

from sqlalchemy import select, update

from services.alerts import paging
from services.alerts.models import Alert, Notification, TherapyHold
from services.alerts.records import timeline
from services.alerts.settings import AlertsSettings
from shared.contracts.scheduling import PatientCenterChangedData
from shared.contracts.vocabulary import OPEN_ALERT_STATUSES, AlertStatus, NotificationStatus
from shared.db import UnitOfWork, is_postgres

# pages planned for the old centre's on-call and not yet on their way
UNSENT = (NotificationStatus.PENDING, NotificationStatus.RETRYING)


def on_patient_center_changed(uow: UnitOfWork, data: PatientCenterChangedData, *,
                              settings: AlertsSettings) -> list[Alert]:
    """Move the patient's open alerts still at the old centre to the new one: their unsent pages
    to the old on-call are cancelled, and a firing alert pages the new centre's level 1 (its
    escalation starting over there). Idempotent: an alert moved already is not at the old
    centre any more. Returns the alerts paged again."""
    stmt = (select(Alert).where(Alert.patient_mrn == data.patient_mrn,
                                Alert.center == data.from_center,
                                Alert.status.in_(OPEN_ALERT_STATUSES)).order_by(Alert.id))
    if is_postgres(uow.session):
        stmt = stmt.with_for_update()
    alerts = list(uow.session.scalars(stmt))
    uow.session.execute(update(TherapyHold).where(
        TherapyHold.patient_mrn == data.patient_mrn, TherapyHold.center == data.from_center)
        .values(center=data.center).execution_options(synchronize_session=False))
    if not alerts:
        return []
    uow.session.execute(update(Notification).where(
        Notification.alert_id.in_([a.id for a in alerts]), Notification.status.in_(UNSENT))
        .values(status=NotificationStatus.CANCELLED, next_attempt_at=None,
                error=f"patient moved to centre {data.center} before the page went out")
        .execution_options(synchronize_session=False))
    paged = []
    for alert in alerts:
        alert.center = data.center
        timeline(uow, alert, paging.SYSTEM, "center_changed",
                 {"from_center": data.from_center, "center": data.center,
                  "changed_by": data.changed_by})
        if alert.status == AlertStatus.FIRING:
            alert.escalation_level, alert.next_escalation_at = 0, None
            paging.page_from_level_one(uow, alert, settings=settings,
                                       reason=f"patient moved to centre {data.center}")
            paged.append(alert)
    uow.session.flush()
    return paged
