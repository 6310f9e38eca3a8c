"""A patient's transfer (scheduling's `patient.center_changed`): their open alerts move to the new
centre, so that its on-call is paged (now, on escalation, on re-notify) and its users see them,
and the old centre's no longer do. Alerts keeps where each transferred patient last went
(`PatientTransfer`), so that a fact still naming the centre they left (an overdue refill the
sweep announced just before the transfer and handled just after it by another consumer, a
recall from inventory before it heard of the move) is raised at the new centre."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy import select, update

from services.alerts import paging, txcache
from services.alerts.holds import NEVER
from services.alerts.models import Alert, Notification, PatientTransfer, TherapyHold
from services.alerts.records import timeline
from services.alerts.rules import RuleResult
from services.alerts.settings import AlertsSettings
from shared.contracts.scheduling import PatientCenterChangedData
from shared.contracts.vocabulary import OPEN_ALERT_STATUSES, AlertStatus, NotificationStatus
from shared.db import UnitOfWork, insert_if_absent, is_postgres

# pages planned for the old centre's on-call and not yet on their way
UNSENT = (NotificationStatus.PENDING, NotificationStatus.RETRYING)


def on_patient_center_changed(uow: UnitOfWork, data: PatientCenterChangedData, *,
                              settings: AlertsSettings) -> list[Alert]:
    """Keep the patient's latest transfer (a repeated or older one changes nothing) and move
    their open alerts elsewhere to its centre: unsent pages to the old on-call are cancelled, and
    a firing alert pages the new centre's level 1 (its escalation starting over there). Returns
    the alerts paged again."""
    insert_if_absent(uow.session, PatientTransfer, {
        "patient_mrn": data.patient_mrn, "center": data.from_center,
        "from_center": data.from_center, "changed_at": NEVER, "updated_at": uow.now()})
    kept = uow.session.get_one(PatientTransfer, data.patient_mrn, with_for_update=True,
                               populate_existing=True)
    if data.changed_at <= kept.changed_at:
        return []
    kept.center, kept.from_center = data.center, data.from_center
    kept.changed_at, kept.updated_at = data.changed_at, uow.now()
    stmt = (select(Alert).where(Alert.patient_mrn == data.patient_mrn,
                                Alert.center != data.center,
                                Alert.status.in_(OPEN_ALERT_STATUSES)).order_by(Alert.id))
    if is_postgres(uow.session):
        stmt = stmt.with_for_update()
    alerts = list(uow.session.scalars(stmt))
    uow.session.execute(update(TherapyHold).where(
        TherapyHold.patient_mrn == data.patient_mrn, TherapyHold.center != data.center)
        .values(center=data.center).execution_options(synchronize_session=False))
    if alerts:
        uow.session.execute(update(Notification).where(
            Notification.alert_id.in_([a.id for a in alerts]), Notification.status.in_(UNSENT))
            .values(status=NotificationStatus.CANCELLED, next_attempt_at=None,
                    error=f"patient moved to centre {data.center} before the page went out")
            .execution_options(synchronize_session=False))
    paged = []
    for alert in alerts:
        timeline(uow, alert, paging.SYSTEM, "center_changed",
                 {"from_center": alert.center, "center": data.center,
                  "changed_by": data.changed_by})
        alert.center = data.center
        if alert.status == AlertStatus.FIRING:
            alert.escalation_level, alert.next_escalation_at = 0, None
            paging.page_from_level_one(uow, alert, settings=settings,
                                       reason=f"patient moved to centre {data.center}")
            paged.append(alert)
    uow.session.flush()
    return paged


_LOOKED_AHEAD = "transfers"  # the transaction's look-ahead (txcache): {mrn: transfer or None}


def _mrns(result: RuleResult) -> set[str]:
    return {f.patient_mrn for f in result.raise_ if f.patient_mrn and f.center}


def _transfers_of(uow: UnitOfWork, mrns: set[str]) -> dict[str, PatientTransfer]:
    # without a flush: the batch's alerts raised so far are not read here, and a transfer is
    # written by statements run at once (`on_patient_center_changed`), never left pending
    with uow.session.no_autoflush:
        return {t.patient_mrn: t for t in uow.session.scalars(
            select(PatientTransfer).where(PatientTransfer.patient_mrn.in_(sorted(mrns))))}


def look_ahead(uow: UnitOfWork, results: Sequence[RuleResult]) -> None:
    """Read in one statement the transfers of every patient these results raise alerts of, for
    `recentred` (kept until the transaction ends or writes a transfer). Fewer than two: no."""
    mrns = set().union(*(_mrns(result) for result in results))
    if len(mrns) < 2:
        return
    moved = _transfers_of(uow, mrns)
    txcache.keep(uow.session, _LOOKED_AHEAD, PatientTransfer,
                 {mrn: moved.get(mrn) for mrn in mrns})


def recentred(uow: UnitOfWork, result: RuleResult) -> RuleResult:
    """A rule's result with each fact that names the centre its patient last left raised at
    the centre the patient went to."""
    mrns = _mrns(result)
    if not mrns:
        return result
    ahead: dict[str, PatientTransfer | None] | None = txcache.peek(uow.session, _LOOKED_AHEAD)
    if ahead is not None and mrns <= ahead.keys():
        moved = {mrn: t for mrn in mrns if (t := ahead[mrn]) is not None}
    else:
        moved = _transfers_of(uow, mrns)
    if not moved:
        return result
    return replace(result, raise_=tuple(
        replace(f, center=moved[f.patient_mrn].center)
        if f.patient_mrn in moved and f.center == moved[f.patient_mrn].from_center else f
        for f in result.raise_))
