"""Alerts's domain operations: raise with dedup, clear, acknowledge, resolve, on-call, silences."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog
from sqlalchemy import Select, and_, or_, select

from services.alerts import paging
from services.alerts.channels import address_refusal, mask_address
from services.alerts.models import Alert, AlertEvent, Heartbeat, Notification, OncallSchedule, Silence
from services.alerts.oncall import Level, levels_from_json, on_call_now
from services.alerts.records import alert_data, timeline
from services.alerts.rules import (
    SYSTEM_STALE_KEY,
    AlertFact,
    ClearFact,
    RuleResult,
    is_stale,
    system_stale,
)
from services.alerts.schemas import (
    AlertDetail,
    AlertRead,
    NotificationRead,
    OncallIn,
    OncallNow,
    OncallRead,
    OncallSet,
    ShiftRead,
    SilenceIn,
    SilenceMatchers,
    SilenceRead,
    TimelineEntry,
)
from services.alerts.settings import AlertsSettings
from services.alerts.webhooks import new_secret
from shared.contracts.alerts import AlertAcknowledgedData, AlertRaisedData, AlertResolvedData
from shared.contracts.vocabulary import RECEIPT_STATUSES, AlertStatus, NotificationStatus, Severity
from shared.db import UnitOfWork, insert_if_absent, is_postgres, new_id
from shared.errors import Conflict, Invalid, NotFound
from shared.pagination import Page, PageParams, page_of, paginate

log = structlog.get_logger(__name__)
T = TypeVar("T")

SYSTEM = "system"
HEARTBEAT_SOURCE = "scheduling"


# ---- raising and clearing ------------------------------------------------------------------

def apply(uow: UnitOfWork, result: RuleResult, *, settings: AlertsSettings) -> list[Alert]:
    """Apply what a rule decided: clear first, then raise."""
    changed: list[Alert] = []
    for clear_fact in result.clear:
        changed.extend(clear(uow, clear_fact))
    for fact in result.raise_:
        changed.append(raise_alert(uow, fact, settings=settings))
    return changed


_OPEN_KNOWN = "alerts.open_known"  # (the transaction, {dedup key: its open alert, or None})


def _known(uow: UnitOfWork) -> dict[str, Alert | None]:
    """The open alert of each dedup key this transaction has settled, by key (None: none is
    open): those it read ahead (`look_ahead`) and those it raised itself, flushed or not. Kept
    for the transaction only; within it, the table changes only through it (a raise adds here,
    a resolve changes the alert in memory), or by another transaction's raise of a key read as
    free, which the open key's unique index refuses at our commit, as without this."""
    tx = uow.session.get_transaction()
    if tx is None:  # none begun yet: begin it, so that what is kept is tied to it
        uow.session.connection()
        tx = uow.session.get_transaction()
    kept = uow.session.info.get(_OPEN_KNOWN)
    if kept is None or kept[0] is not tx:
        kept = uow.session.info[_OPEN_KNOWN] = (tx, {})
    known: dict[str, Alert | None] = kept[1]
    return known


def look_ahead(uow: UnitOfWork, results: Sequence[RuleResult]) -> None:
    """Read (and lock) in one statement the open alerts of every dedup key these results raise,
    so that raising them looks up none (a batch's 20, a recall's 1,000). Fewer than two: no."""
    wanted = {fact.dedup_key for result in results for fact in result.raise_}
    known = _known(uow)
    wanted -= known.keys()
    if len(wanted) < 2:
        return
    # in key order: two consumers reading overlapping batches ahead lock in the same order
    stmt = (select(Alert).where(Alert.dedup_key.in_(sorted(wanted)),
                                Alert.status != AlertStatus.RESOLVED).order_by(Alert.dedup_key))
    if is_postgres(uow.session):
        stmt = stmt.with_for_update()
    found: dict[str, Alert | None] = dict.fromkeys(wanted)
    with uow.session.no_autoflush:
        for alert in uow.session.execute(stmt).scalars():
            if alert.status != AlertStatus.RESOLVED:  # not resolved by us, unflushed
                found[alert.dedup_key] = alert
    known.update(found)


def _open_by_key(uow: UnitOfWork, dedup_key: str) -> Alert | None:
    """The open alert with this dedup key, locked, without flushing what the transaction wrote
    so far: a batch's alerts then go to the database at its end, one INSERT per table, not three
    statements each. The transaction's own changes are taken from memory (`_known`): an alert
    it raised (unflushed), and one it resolved (unflushed, still open in the table) is not
    open."""
    known = _known(uow)
    if dedup_key in known:
        alert = known[dedup_key]
        return alert if alert is not None and alert.status != AlertStatus.RESOLVED else None
    stmt = select(Alert).where(Alert.dedup_key == dedup_key, Alert.status != AlertStatus.RESOLVED)
    if is_postgres(uow.session):
        stmt = stmt.with_for_update()
    with uow.session.no_autoflush:
        rows = uow.session.execute(stmt).scalars().all()
    return next((alert for alert in rows if alert.status != AlertStatus.RESOLVED), None)


def raise_alert(uow: UnitOfWork, fact: AlertFact, *, settings: AlertsSettings) -> Alert:
    """Raise an alert, or repeat the open one with its dedup key (severity only rises); plan pages."""
    now = uow.now()
    alert = _open_by_key(uow, fact.dedup_key)
    if alert is not None:
        alert.occurrences += 1
        alert.last_raised_at = now
        rose = Severity(fact.severity).rank > Severity(alert.severity).rank
        entry: dict[str, Any] = {"occurrences": alert.occurrences}
        if rose:
            entry.update(from_severity=alert.severity, to_severity=fact.severity)
            alert.severity = fact.severity
        if fact.summary != alert.summary:
            # the summary tells the latest fact, as the details do (a flow alert says the latest
            # deviation, not the first); the severity keeps the worst
            entry.update(from_summary=alert.summary, to_summary=fact.summary)
            alert.summary = fact.summary
        alert.details = _merged_details(alert.details, fact.details)
        timeline(uow, alert, SYSTEM, "severity_raised" if rose else "repeated", entry)
        if rose:
            _audit(uow, alert, "alert.severity_raised", entry)
            uow.publish(alert_data(alert, AlertRaisedData), subject=alert.id)
            if alert.status == AlertStatus.FIRING:
                paging.page_from_level_one(uow, alert, settings=settings, reason="severity raised")
        return alert
    alert = Alert(
        id=new_id(), kind=fact.kind, severity=fact.severity, status=AlertStatus.FIRING,
        dedup_key=fact.dedup_key, patient_mrn=fact.patient_mrn, pump_serial=fact.pump_serial,
        center=fact.center, summary=fact.summary, details=dict(fact.details),
        first_raised_at=now, last_raised_at=now, occurrences=1, escalation_level=0,
        silenced_by=None, held_by_therapy=None, next_escalation_at=None, wake_at=None,
    )
    # the alert is inserted once, with what paging decides (silenced, held, escalation), at the
    # next flush (the transaction's end, when nothing reads the alerts table before), together
    # with its timeline and page: no lookup paging makes reads a row of it
    _known(uow)[alert.dedup_key] = alert
    with uow.session.no_autoflush:
        uow.session.add(alert)
        timeline(uow, alert, SYSTEM, "raised", {"severity": alert.severity})
        _audit(uow, alert, "alert.raised", {"kind": alert.kind, "severity": alert.severity})
        paging.page_from_level_one(uow, alert, settings=settings, reason="raised")
    uow.publish(alert_data(alert, AlertRaisedData), subject=alert.id)
    log.info("alert.raised", alert_id=alert.id, kind=alert.kind, severity=alert.severity)
    return alert


def _refill_ids(details: dict[str, Any]) -> list[str]:
    """The readings behind an alert (alerts raised before `refill_ids` carry `refill_id` only)."""
    ids = details.get("refill_ids")
    if isinstance(ids, list):
        return [str(i) for i in ids]
    return [str(details["refill_id"])] if details.get("refill_id") else []


def _merged_details(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    merged = {**old, **new}
    if "refill_ids" in new:
        earlier = _refill_ids(old)
        merged["refill_ids"] = earlier + [i for i in _refill_ids(new) if i not in earlier]
    return merged


def clear(uow: UnitOfWork, fact: ClearFact) -> list[Alert]:
    """Resolve the open alerts a condition that went away names."""
    stmt = select(Alert).where(Alert.status != AlertStatus.RESOLVED)
    if fact.dedup_key is not None:
        stmt = stmt.where(Alert.dedup_key == fact.dedup_key)
    else:
        stmt = stmt.where(Alert.pump_serial == fact.pump_serial, Alert.kind.in_(fact.kinds))
    if is_postgres(uow.session):
        stmt = stmt.with_for_update()
    alerts = list(uow.session.execute(stmt).scalars())
    if fact.refill_id is not None:
        return _withdraw_reading(uow, alerts, fact)
    for alert in alerts:
        _resolve(uow, alert, actor=SYSTEM, resolution=fact.resolution, auto=True)
    return alerts


def _withdraw_reading(uow: UnitOfWork, alerts: list[Alert], fact: ClearFact) -> list[Alert]:
    """A reading entered in error: the alerts it alone raised resolve with the reason; one that
    other readings repeated stays open, with the withdrawal on its timeline."""
    changed = []
    for alert in alerts:
        ids = _refill_ids(alert.details)
        if fact.refill_id not in ids:
            continue
        changed.append(alert)
        left = [i for i in ids if i != fact.refill_id]
        if not left:
            _resolve(uow, alert, actor=SYSTEM, resolution=fact.resolution, auto=True)
            continue
        details = {**alert.details, "refill_ids": left}
        if details.get("refill_id") == fact.refill_id:
            details["refill_id"] = left[-1]
        alert.details = details
        timeline(uow, alert, SYSTEM, "reading_withdrawn",
                 {"refill_id": fact.refill_id, "resolution": fact.resolution,
                  "readings_left": left})
    return changed


def _resolve(uow: UnitOfWork, alert: Alert, *, actor: str, resolution: str, auto: bool) -> None:
    alert.status = AlertStatus.RESOLVED
    alert.resolved_at = uow.now()
    alert.resolved_by = actor
    alert.resolution = resolution
    alert.next_escalation_at = None
    alert.wake_at = None
    timeline(uow, alert, actor, "auto_resolved" if auto else "resolved", {"resolution": resolution})
    _audit(uow, alert, "alert.resolved", {"resolution": resolution}, actor=actor)
    uow.publish(alert_data(alert, AlertResolvedData), subject=alert.id)


# ---- people acting on alerts ---------------------------------------------------------------

def _get_for_update(uow: UnitOfWork, alert_id: str) -> Alert:
    return _locked(uow, Alert, alert_id, what="alert")


def _locked(uow: UnitOfWork, model: type[T], key: str, *, what: str) -> T:
    """The row of `model` with primary key `key`, locked for this transaction (404 when none)."""
    row = uow.session.get(model, key, with_for_update=is_postgres(uow.session))
    if row is None:
        raise NotFound(f"{what} {key} not found")
    return row


def acknowledge(*, uow: UnitOfWork, alert_id: str, actor: str, note: str | None,
                settings: AlertsSettings, notification_id: str | None = None) -> AlertDetail:
    """Acknowledge a firing alert: escalation stops, and it fires again when still unresolved
    after the acknowledgement timeout. The acknowledging user's pages are acknowledged: the page
    whose ack link was used (`notification_id`, 422 when not a page of this alert) and the pages
    addressed to them (recipient = their login); other recipients' pages keep their status.
    409 when it is not firing."""
    alert = _get_for_update(uow, alert_id)
    if alert.status != AlertStatus.FIRING:
        raise Conflict(f"alert {alert_id} is {alert.status}; only a firing alert can be acknowledged",
                       current_status=alert.status)
    if notification_id is not None:
        page = uow.session.get(Notification, notification_id)
        if page is None or page.alert_id != alert.id:
            raise Invalid("notification_id", f"not a page of alert {alert_id}")
    timeout_s = paging.ack_timeout_seconds(uow, alert, settings=settings)
    entry: dict[str, Any] = {"note": note} if note else {}
    if notification_id is not None:
        entry["notification_id"] = notification_id
    _acknowledge(uow, alert, actor=actor, wake_at=uow.now() + timedelta(seconds=timeout_s),
                 entry=entry, via=notification_id)
    return get_alert(uow=uow, alert_id=alert_id)


def _acknowledge(uow: UnitOfWork, alert: Alert, *, actor: str, wake_at: datetime,
                 entry: dict[str, Any], action: str = "acknowledged", via: str | None = None) -> None:
    """The alert acknowledged (once: by whom, when) until `wake_at`; of its pages that reached
    someone, the actor's are acknowledged: the page `via` (whose ack link was used) and those
    addressed to the actor. Every other recipient's page keeps its own read status."""
    alert.status = AlertStatus.ACKNOWLEDGED
    alert.acknowledged_by = actor
    alert.acknowledged_at = uow.now()
    alert.next_escalation_at = None
    alert.wake_at = wake_at
    timeline(uow, alert, actor, action, {**entry, "wake_at": wake_at.isoformat()})
    _audit(uow, alert, f"alert.{action}", entry, actor=actor)
    uow.publish(alert_data(alert, AlertAcknowledgedData), subject=alert.id)
    theirs = Notification.recipient == actor
    if via is not None:
        theirs = or_(theirs, Notification.id == via)
    pages = uow.session.execute(select(Notification).where(
        Notification.alert_id == alert.id, Notification.status.in_(RECEIPT_STATUSES),
        Notification.acknowledged_at.is_(None), theirs).order_by(Notification.created_at)).scalars()
    for n in pages:
        paging.advance_receipt(uow, n, alert, NotificationStatus.ACKNOWLEDGED, actor=actor)


def snooze(*, uow: UnitOfWork, alert_id: str, actor: str, until: datetime, reason: str,
           settings: AlertsSettings) -> AlertDetail:
    """Snooze an open alert until `until` (future, at most HAI_SNOOZE_MAX_SECONDS away): no pages
    nor escalation till then; then, still unresolved, it fires again and pages level 1. The
    snoozer's own pages (addressed to them) are acknowledged, as by an acknowledgement."""
    alert = _get_for_update(uow, alert_id)
    if alert.status == AlertStatus.RESOLVED:
        raise Conflict(f"alert {alert_id} is resolved; only an open alert can be snoozed",
                       current_status=alert.status)
    now = uow.now()
    if until <= now:
        raise Invalid("until", "must be in the future")
    if (until - now).total_seconds() > settings.snooze_max_seconds:
        raise Invalid("until", f"at most {settings.snooze_max_seconds} s from now")
    _acknowledge(uow, alert, actor=actor, wake_at=until, entry={"reason": reason}, action="snoozed")
    return get_alert(uow=uow, alert_id=alert_id)


def mark_seen(*, uow: UnitOfWork, notification_id: str, actor: str) -> NotificationRead:
    """The page's ack link was opened: the page is `seen` (once; never moves a page back)."""
    n = _locked(uow, Notification, notification_id, what="notification")
    if n.status not in RECEIPT_STATUSES:
        raise Conflict(f"notification {notification_id} is {n.status}; only a page sent can be seen",
                       current_status=n.status)
    alert = uow.session.get_one(Alert, n.alert_id)
    if paging.advance_receipt(uow, n, alert, NotificationStatus.SEEN, actor=actor):
        uow.audit(actor=actor, action="notification.seen", entity_type="notification",
                  entity_id=n.id, changes={"alert_id": alert.id, "status": n.status,
                                           "seen_at": n.seen_at.isoformat() if n.seen_at else None})
    return NotificationRead.model_validate(n)


def resolve(*, uow: UnitOfWork, alert_id: str, actor: str, resolution: str) -> AlertDetail:
    """Resolve a firing or acknowledged alert. 409 when already resolved."""
    alert = _get_for_update(uow, alert_id)
    if alert.status == AlertStatus.RESOLVED:
        raise Conflict(f"alert {alert_id} is already resolved", current_status=alert.status)
    _resolve(uow, alert, actor=actor, resolution=resolution, auto=False)
    return get_alert(uow=uow, alert_id=alert_id)


# ---- reading -------------------------------------------------------------------------------

def list_alerts(*, uow: UnitOfWork, page: PageParams, status: str | None = None,
                severity: str | None = None, kind: str | None = None,
                patient_mrn: str | None = None, pump_serial: str | None = None,
                center: str | None = None) -> Page[AlertRead]:
    """Alerts, newest first, filtered."""
    stmt: Select[Any] = select(Alert)
    for column, value in ((Alert.status, status), (Alert.severity, severity), (Alert.kind, kind),
                          (Alert.patient_mrn, patient_mrn), (Alert.pump_serial, pump_serial),
                          (Alert.center, center)):
        if value is not None:
            stmt = stmt.where(column == value)
    return paginate(uow.session, stmt, keys=[Alert.first_raised_at, Alert.id], params=page,
                    to_item=AlertRead.model_validate, descending=True)


def _timeline_of(uow: UnitOfWork, alert_id: str) -> list[TimelineEntry]:
    rows = uow.session.execute(
        select(AlertEvent).where(AlertEvent.alert_id == alert_id).order_by(AlertEvent.id)
    ).scalars()
    return [TimelineEntry.model_validate(r) for r in rows]


def get_alert(*, uow: UnitOfWork, alert_id: str) -> AlertDetail:
    """One alert with its timeline."""
    alert = uow.session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id} not found")
    return AlertDetail(**AlertRead.model_validate(alert).model_dump(),
                       timeline=_timeline_of(uow, alert_id))


def alert_timeline(*, uow: UnitOfWork, alert_id: str, page: PageParams) -> Page[TimelineEntry]:
    """An alert's timeline, oldest first, paginated."""
    if uow.session.get(Alert, alert_id) is None:
        raise NotFound(f"alert {alert_id} not found")
    rows = list(uow.session.execute(
        select(AlertEvent).where(AlertEvent.alert_id == alert_id).order_by(AlertEvent.id)
    ).scalars())
    paged = page_of(rows, page, key=lambda row: row.id)
    return Page[TimelineEntry](items=[TimelineEntry.model_validate(r) for r in paged.items],
                               next_cursor=paged.next_cursor)


def list_notifications(*, uow: UnitOfWork, page: PageParams,
                       alert_id: str | None = None) -> Page[NotificationRead]:
    """Pages sent or under way, oldest first."""
    stmt: Select[Any] = select(Notification)
    if alert_id is not None:
        stmt = stmt.where(Notification.alert_id == alert_id)
    return paginate(uow.session, stmt, keys=[Notification.created_at, Notification.id],
                    params=page, to_item=NotificationRead.model_validate)


# ---- on-call -------------------------------------------------------------------------------

def put_oncall(*, uow: UnitOfWork, center: str, body: OncallIn, actor: str,
               allow_private: bool, escalation_default: int | None = None) -> OncallSet:
    """Set (replace) a center's on-call levels, escalation delay and webhook signing secret."""
    uow.centers.require(center)
    check_addresses(body, allow_private=allow_private)
    if "escalation_delay_seconds" not in body.model_fields_set and escalation_default is not None:
        # left out: the centre's own escalation delay (centre settings), else the system's
        body = body.model_copy(update={"escalation_delay_seconds": escalation_default})
    levels = [lv.model_dump(mode="json") for lv in body.levels]
    # a PUT replaces whatever is there: of concurrent PUTs creating one center, the last wins
    # (a read-then-insert let all but one fail on the key)
    insert_if_absent(uow.session, OncallSchedule, {
        "center": center, "escalation_delay_seconds": body.escalation_delay_seconds,
        "ack_timeout_seconds": body.ack_timeout_seconds,
        "levels": levels, "updated_at": uow.now(), "updated_by": actor})
    schedule = uow.session.get_one(OncallSchedule, center,
                                   with_for_update=is_postgres(uow.session))
    generated = None
    if body.webhook_secret is not None:
        schedule.webhook_secret, secret_change = body.webhook_secret.get_secret_value(), "set"
    elif schedule.webhook_secret is None:
        generated = new_secret()
        schedule.webhook_secret, secret_change = generated, "generated"
    else:
        secret_change = "kept"
    schedule.escalation_delay_seconds = body.escalation_delay_seconds
    schedule.ack_timeout_seconds = body.ack_timeout_seconds
    schedule.levels = levels
    schedule.updated_at = uow.now()
    schedule.updated_by = actor
    uow.audit(actor=actor, action="oncall.updated", entity_type="oncall", entity_id=center,
              changes={"escalation_delay_seconds": body.escalation_delay_seconds,
                       "ack_timeout_seconds": body.ack_timeout_seconds,
                       "levels": len(levels), "webhook_secret": secret_change})
    return OncallSet(**_oncall_read(schedule).model_dump(), webhook_secret=generated)


def check_addresses(body: OncallIn, *, allow_private: bool) -> None:
    """422 naming the first address a page may not go to (CONTRACT: Alerts): webhook URLs and
    apprise URLs of self-hosted services by their host, apprise URLs apprise cannot send to."""
    for i, level in enumerate(body.levels):
        for j, member in enumerate(level.members):
            for k, route in enumerate(member.routes()):
                refusal = address_refusal(route.channel, route.address, allow_private=allow_private)
                if refusal:
                    where = "address" if k == 0 else f"fallbacks.{k - 1}.address"
                    raise Invalid(f"levels.{i}.members.{j}.{where}",
                                  f"refused: {refusal} ({mask_address(route.channel, route.address)})")


def _masked_levels(levels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored levels with every apprise address masked (its secrets are never shown back)."""
    def masked(route: dict[str, Any]) -> dict[str, Any]:
        return {**route, "address": mask_address(route["channel"], route["address"])}
    return [{**lv, "members": [{**masked(m), "fallbacks": [masked(f) for f in m.get("fallbacks") or []]}
                               for m in lv["members"]]}
            for lv in levels]


def _oncall_read(schedule: OncallSchedule) -> OncallRead:
    return OncallRead(center=schedule.center,
                      escalation_delay_seconds=schedule.escalation_delay_seconds,
                      ack_timeout_seconds=schedule.ack_timeout_seconds,
                      levels=_masked_levels(schedule.levels),
                      updated_at=schedule.updated_at, updated_by=schedule.updated_by)


def get_oncall(*, uow: UnitOfWork, center: str) -> OncallRead:
    """A center's on-call configuration."""
    schedule = uow.session.get(OncallSchedule, center)
    if schedule is None:
        raise NotFound(f"no on-call configured for center {center}")
    return _oncall_read(schedule)


def oncall_now(*, uow: UnitOfWork, center: str) -> OncallNow:
    """Who holds each level of a center's on-call now."""
    schedule = uow.session.get(OncallSchedule, center)
    if schedule is None:
        raise NotFound(f"no on-call configured for center {center}")
    at = uow.now()
    shifts = on_call_now(levels_of(schedule), at)
    return OncallNow(center=center, at=at,
                     escalation_delay_seconds=schedule.escalation_delay_seconds,
                     levels=[ShiftRead(level=s.level, name=s.member.name,
                                       channel=s.member.channel,
                                       address=mask_address(s.member.channel, s.member.address),
                                       shift_started_at=s.started_at,
                                       shift_ends_at=s.ends_at) for s in shifts])


def levels_of(schedule: OncallSchedule) -> list[Level]:
    """The stored levels as rotation values."""
    return levels_from_json(schedule.levels)


# ---- silences ------------------------------------------------------------------------------

def create_silence(*, uow: UnitOfWork, body: SilenceIn, actor: str) -> SilenceRead:
    """Silence the pages (never the records) of matching alerts for a while."""
    m = body.matchers
    if m.kind is None and m.pump_serial is None and m.center is None:
        raise Invalid("matchers", "name at least one of kind, pump_serial, center")
    uow.centers.require(m.center, field="matchers.center")  # else it silences other centres
    silence = Silence(id=new_id(), kind=m.kind, pump_serial=m.pump_serial, center=m.center,
                      starts_at=body.starts_at, ends_at=body.ends_at, reason=body.reason,
                      created_by=actor, created_at=uow.now())
    uow.session.add(silence)
    uow.audit(actor=actor, action="silence.created", entity_type="silence", entity_id=silence.id,
              changes=body.model_dump(mode="json"))
    return _silence_read(silence)


def _silence_read(s: Silence) -> SilenceRead:
    return SilenceRead(id=s.id, matchers=SilenceMatchers(kind=s.kind, pump_serial=s.pump_serial,
                                                         center=s.center),
                       starts_at=s.starts_at, ends_at=s.ends_at, reason=s.reason,
                       created_by=s.created_by, created_at=s.created_at)


def list_silences(*, uow: UnitOfWork, page: PageParams, active: bool | None = None) -> Page[SilenceRead]:
    """Silences, newest first; `active` keeps those in force now (or not)."""
    stmt: Select[Any] = select(Silence)
    now = uow.now()
    in_force = and_(Silence.starts_at <= now, Silence.ends_at > now)
    if active is True:
        stmt = stmt.where(in_force)
    elif active is False:
        stmt = stmt.where(~in_force)
    return paginate(uow.session, stmt, keys=[Silence.created_at, Silence.id], params=page,
                    to_item=_silence_read, descending=True)


# ---- the heartbeat watchdog ----------------------------------------------------------------

def record_heartbeat(uow: UnitOfWork, *, source: str = HEARTBEAT_SOURCE) -> None:
    """Note that a heartbeat was heard now (the first row is inserted race-safe: a consumer and
    the watchdog, or two consumers, may both find none)."""
    insert_if_absent(uow.session, Heartbeat, {"source": source, "last_heard_at": uow.now()})
    row = uow.session.get_one(Heartbeat, source, with_for_update=is_postgres(uow.session),
                              populate_existing=True)
    row.last_heard_at = max(row.last_heard_at, uow.now())


def watchdog(uow: UnitOfWork, *, settings: AlertsSettings, source: str = HEARTBEAT_SOURCE) -> dict[str, Any]:
    """Raise `system_stale` when the heartbeat has been silent too long (first run starts the clock)."""
    now = uow.now()
    row = uow.session.get(Heartbeat, source)
    if row is None:
        # the first run starts the clock; a heartbeat heard at the same moment may insert the
        # row first: then that row stands, and nothing fails
        insert_if_absent(uow.session, Heartbeat, {"source": source, "last_heard_at": now})
        return {"stale": False, "started": True}
    stale = is_stale(last_heard_at=row.last_heard_at, now=now,
                     sweep_interval_seconds=settings.sweep_interval_seconds,
                     stale_after_intervals=settings.stale_after_intervals)
    if not stale:
        return {"stale": False}
    already = _open_by_key(uow, SYSTEM_STALE_KEY)
    if already is None:
        raise_alert(uow, system_stale(last_heard_at=row.last_heard_at, now=now), settings=settings)
    return {"stale": True}


# ---- helpers -------------------------------------------------------------------------------

def _audit(uow: UnitOfWork, alert: Alert, action: str, changes: dict[str, Any],
           actor: str = SYSTEM) -> None:
    uow.audit(actor=actor, action=action, entity_type="alert", entity_id=alert.id, changes=changes)
