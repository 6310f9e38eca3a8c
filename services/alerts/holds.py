"""Therapy pauses (CONTRACT.md, Holds): alerts' copy of each therapy's status, from scheduling's
`therapy.status_changed`. While a therapy is paused its pump's warnings are recorded but not
paged (`paging.page_from_level_one`); when it resumes or stops, what it held is paged then."""

from __future__ import annotations

from datetime import UTC, datetime

from services.alerts import paging
from services.alerts.models import Alert, TherapyHold
from services.alerts.settings import AlertsSettings
from shared.contracts.scheduling import TherapyStatusChangedData
from shared.contracts.vocabulary import TherapyStatus
from shared.db import UnitOfWork, insert_if_absent

NEVER = datetime(1970, 1, 1, tzinfo=UTC)  # the `at` of a hold no event has set yet


def on_therapy_status_changed(uow: UnitOfWork, data: TherapyStatusChangedData, *,
                              settings: AlertsSettings) -> list[Alert]:
    """Keep the therapy's latest status (a repeat, or an event older than the one kept, changes
    nothing); a pause that ends releases what it held. Returns the alerts released."""
    insert_if_absent(uow.session, TherapyHold, {
        "therapy_id": data.therapy_id, "pump_serial": data.pump_serial,
        "patient_mrn": data.patient_mrn, "center": data.center, "status": TherapyStatus.ACTIVE,
        "at": NEVER, "updated_at": uow.now()})
    hold = uow.session.get_one(TherapyHold, data.therapy_id, with_for_update=True,
                               populate_existing=True)
    if data.at <= hold.at:
        return []
    was_paused = hold.status == TherapyStatus.PAUSED
    hold.status, hold.reason, hold.at, hold.updated_at = (data.status, data.reason, data.at,
                                                         uow.now())
    uow.session.flush()
    if not was_paused or data.status == TherapyStatus.PAUSED:
        return []
    return paging.release_paused(uow, data.therapy_id, settings=settings,
                                 ended="resumed" if data.status == TherapyStatus.ACTIVE
                                 else "stopped")
