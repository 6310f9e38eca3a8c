"""Alerts's HTTP API (thin: parse, call the service, shape the answer)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response

from services.alerts import centers, service
from services.alerts.schemas import (
    AckIn,
    AlertDetail,
    AlertRead,
    NotificationRead,
    OncallIn,
    OncallNow,
    OncallRead,
    OncallSet,
    ResolveIn,
    SilenceIn,
    SilenceRead,
    SnoozeIn,
    TimelineEntry,
)
from services.alerts.webhooks import private_allowed
from shared.audit import ReadAuditDep
from shared.auth import CurrentUser, Principal, require_roles
from shared.contracts.vocabulary import AlertStatus, Severity
from shared.idempotency import IdempotencyDep
from shared.pagination import Page, PageDep
from shared.text import Centre, Key
from shared.web import RuntimeDep, UnitOfWorkRoute, UowDep

router = APIRouter(tags=["alerts"], route_class=UnitOfWorkRoute)

Responder = Annotated[Principal, Depends(require_roles("oncall", "nurse", "oncologist"))]
Oncall = Annotated[Principal, Depends(require_roles("oncall"))]
Center = Key
NewCenter = Annotated[Centre, Path(description="a centre code, or `default`")]


@router.get("/alerts")
def list_alerts(
    uow: UowDep, audit: ReadAuditDep, page: PageDep,
    status: AlertStatus | None = None, severity: Severity | None = None,
    kind: Key | None = None,
    patient_mrn: Key | None = None,
    pump_serial: Key | None = None,
    center: Key | None = None,
) -> Page[AlertRead]:
    """Alerts, newest first (the patients read are audited)."""
    return audit.page(service.list_alerts(
        uow=uow, page=page, status=status, severity=severity, kind=kind,
        patient_mrn=patient_mrn, pump_serial=pump_serial, center=center))


@router.get("/alerts/{alert_id}")
def get_alert(uow: UowDep, audit: ReadAuditDep, alert_id: Key) -> AlertDetail:
    """One alert with its timeline (the read is audited)."""
    return audit.item(service.get_alert(uow=uow, alert_id=alert_id))


@router.get("/alerts/{alert_id}/timeline")
def get_timeline(_: CurrentUser, uow: UowDep, page: PageDep, alert_id: Key) -> Page[TimelineEntry]:
    """An alert's timeline, oldest first, paginated."""
    return service.alert_timeline(uow=uow, alert_id=alert_id, page=page)


@router.post("/alerts/{alert_id}/ack")
def acknowledge(user: Responder, uow: UowDep, runtime: RuntimeDep, alert_id: Key,
                body: AckIn | None = None) -> AlertDetail:
    """Acknowledge a firing alert (stops its escalation; unresolved after the centre's
    acknowledgement timeout it fires again). The acknowledging user's pages are acknowledged:
    the one whose ack link was used (`notification_id`) and those addressed to them."""
    return service.acknowledge(uow=uow, alert_id=alert_id, actor=user.sub,
                               note=body.note if body else None, settings=runtime.settings,
                               notification_id=body.notification_id if body else None)


@router.post("/alerts/{alert_id}/snooze")
def snooze(user: Responder, uow: UowDep, runtime: RuntimeDep, alert_id: Key,
           body: SnoozeIn) -> AlertDetail:
    """Snooze an open alert until `until`: no pages till then; unresolved then, it fires again."""
    return service.snooze(uow=uow, alert_id=alert_id, actor=user.sub, until=body.until,
                          reason=body.reason, settings=runtime.settings)


@router.post("/alerts/{alert_id}/resolve")
def resolve(user: Responder, uow: UowDep, alert_id: Key, body: ResolveIn) -> AlertDetail:
    """Resolve an alert."""
    return service.resolve(uow=uow, alert_id=alert_id, actor=user.sub, resolution=body.resolution)


@router.get("/notifications")
def list_notifications(_: CurrentUser, uow: UowDep, page: PageDep,
                       alert_id: Key | None = None) -> Page[NotificationRead]:
    """Pages, oldest first."""
    return service.list_notifications(uow=uow, page=page, alert_id=alert_id)


@router.post("/notifications/{notification_id}/seen")
def page_seen(user: Responder, uow: UowDep, notification_id: Key) -> NotificationRead:
    """The page's ack link was opened (the dashboard says so): the page is `seen`."""
    return service.mark_seen(uow=uow, notification_id=notification_id, actor=user.sub)


@router.put("/oncall/{center}")
def put_oncall(user: Oncall, uow: UowDep, runtime: RuntimeDep, center: NewCenter,
               body: OncallIn) -> OncallSet:
    """Set a center's on-call levels (center `default` covers centers without one) and the secret
    that signs its webhook pages (generated, and shown in this answer only, when none is set)."""
    return service.put_oncall(
        uow=uow, center=center, body=body, actor=user.sub,
        allow_private=private_allowed(runtime.settings),
        escalation_default=centers.effective_settings(
            uow, runtime.settings, center).escalation_delay_seconds)


@router.get("/oncall/{center}")
def get_oncall(_: CurrentUser, uow: UowDep, center: Center) -> OncallRead:
    """A center's on-call configuration."""
    return service.get_oncall(uow=uow, center=center)


@router.get("/oncall/{center}/now")
def oncall_now(_: CurrentUser, uow: UowDep, center: Center) -> OncallNow:
    """Who holds each level now."""
    return service.oncall_now(uow=uow, center=center)


@router.post("/silences", status_code=201, response_model=SilenceRead)
def create_silence(user: Oncall, uow: UowDep, idem: IdempotencyDep, body: SilenceIn) -> Response:
    """Silence the pages of matching alerts for a while (alerts are still recorded)."""
    return idem.run(uow, body, lambda: service.create_silence(uow=uow, body=body, actor=user.sub))


@router.get("/silences")
def list_silences(_: CurrentUser, uow: UowDep, page: PageDep,
                  active: bool | None = None) -> Page[SilenceRead]:
    """Silences, newest first."""
    return service.list_silences(uow=uow, page=page, active=active)
