"""Paging over the database: plan pages, escalate, claim due pages, send them, record the result.

The paging policy is here whole: `page_from_level_one` is what the alerts service calls when an
alert is raised (or rises to a severity that pages), and every page, first, escalated or after
the level below failed, is planned by `_page_level`.

Every page is a `notifications` row written in the transaction that decided it (raise, escalation,
failure of the level below). The pager sweeps the table: it claims due rows (compare-and-set on
status and attempts, `FOR UPDATE SKIP LOCKED` on PostgreSQL) by setting them `sending` with a
lease (`claimed_until`) and a claim token, commits, sends OUTSIDE any transaction, then records
the result only if it still holds the claim (the urgent lane claims an abnormal flow's page in
the transaction of the consumer that raised it, and sends it once that has committed).
So two workers never send the same attempt, and a
worker killed mid-send loses nothing: once its lease runs out another worker takes the row over.
The window that remains is at-least-once: a worker killed after the recipient got the page but
before the result was committed makes the page go out again after the lease (the page carries
`notification_id`, also sent as the webhook's Idempotency-Key, for receivers to de-duplicate).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx
import structlog
from prometheus_client import Counter
from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    func,
    literal,
    select,
    text,
    tuple_,
    union_all,
    update,
)
from sqlalchemy import event as sa_event
from sqlalchemy.orm import InstrumentedAttribute

from services.alerts import centers, txcache
from services.alerts.channels import Channels, Delivery, PageMessage, SendError, page_alert
from services.alerts.models import (
    MESSAGES_SENT,
    Alert,
    AlertEvent,
    Notification,
    OncallSchedule,
    Silence,
    TherapyHold,
)
from services.alerts.oncall import levels_from_json, next_attempt_delay_seconds, shift_at
from services.alerts.records import alert_data, alert_json, timeline
from services.alerts.rules import pause_holds
from services.alerts.settings import AlertsSettings
from shared import tracing
from shared.contracts.alerts import AlertRaisedData, NotificationData, PageFailedData, PageSentData
from shared.contracts.vocabulary import (
    RECEIPT_STATUSES,
    AlertKind,
    AlertStatus,
    NotificationStatus,
    Severity,
    TherapyStatus,
)
from shared.db import UnitOfWork, UnitOfWorkFactory, is_postgres, new_id
from shared.runtime import ServiceRuntime

log = structlog.get_logger(__name__)
N = TypeVar("N", bound=NotificationData)

SYSTEM = "system"
DEFAULT_CENTER = "default"  # the on-call used for alerts of a center without one (and system alerts)
CLAIM_BATCH = 50
RATE_WINDOW_SECONDS = 60  # the per-recipient page limit counts the messages of the last minute
MAX_PARALLEL_SENDS = 16
URGENT_LANE = "urgent"  # a targeted pass's pages (the flow worker's), so marked on the timeline


# ---- planning (inside the transaction that decides) ----------------------------------------

def page_from_level_one(uow: UnitOfWork, alert: Alert, *, settings: AlertsSettings, reason: str) -> None:
    """The paging policy of an alert raised, or firing and risen in severity: critical and
    warning page level 1 (critical also arms escalation); info does not, and a silence in force
    records the alert as silenced instead of paging it; a warning of a pump whose therapy is
    paused is recorded as held by that pause (`pause_holds`). An alert is held by one of them at
    most, so the end of the one it is held by pages it once (and the other, still in force,
    holds it again)."""
    if alert.severity == Severity.INFO:
        return
    alert.held_by_therapy = None
    silence = active_silence(uow, alert)
    if silence is not None:
        alert.silenced_by = silence.id
        alert.next_escalation_at = None
        timeline(uow, alert, SYSTEM, "silenced", {"silence_id": silence.id, "reason": silence.reason})
        return
    hold = active_pause(uow, alert)
    if hold is not None:
        alert.held_by_therapy = hold.therapy_id
        alert.next_escalation_at = None
        timeline(uow, alert, SYSTEM, "held_by_pause",
                 {"therapy_id": hold.therapy_id, "reason": hold.reason})
        return
    _page_level(uow, alert, 1, schedule=schedule_for(uow, alert.center), settings=settings,
                reason=reason)


def _page_level(uow: UnitOfWork, alert: Alert, level: int, *, schedule: OncallSchedule | None,
                settings: AlertsSettings, reason: str) -> None:
    """Page `level` now and arm (or disarm) the escalation to the level above: the one way a
    page is planned, from level one, on escalation, or when the level below failed."""
    _plan_level(uow, alert, level, reason=reason, schedule=schedule)
    _arm_escalation(uow, alert, schedule=schedule, settings=settings)


def active_silence(uow: UnitOfWork, alert: Alert) -> Silence | None:
    """A silence in force now that matches the alert (the first created), if any."""
    now = uow.now()
    for s in _silences_not_ended(uow, now):
        if (s.starts_at <= now < s.ends_at
                and (s.kind is None or s.kind == alert.kind)
                and (s.pump_serial is None or s.pump_serial == alert.pump_serial)
                and (s.center is None or s.center == alert.center)):
            return s
    return None


def _silences_not_ended(uow: UnitOfWork, now: datetime) -> list[Silence]:
    """The silences not ended at `now`, oldest first, read once per transaction (a batch of
    alerts asks for each): in force or still to start, as the clock moves on during it."""
    def load() -> tuple[datetime, list[Silence]]:
        return now, list(uow.session.scalars(
            select(Silence).where(Silence.ends_at > now).order_by(Silence.created_at)))

    read_at, silences = txcache.cached(uow.session, "silences", Silence, load)
    if now < read_at:  # a clock set back (tests): those ended by then may not be ended now
        txcache.forget(uow.session)
        read_at, silences = txcache.cached(uow.session, "silences", Silence, load)
    return silences


def active_pause(uow: UnitOfWork, alert: Alert) -> TherapyHold | None:
    """The paused therapy of the alert's pump, when the pause holds this alert."""
    if alert.pump_serial is None or not pause_holds(kind=alert.kind, severity=alert.severity):
        return None
    stmt = select(TherapyHold).where(TherapyHold.pump_serial == alert.pump_serial,
                                     TherapyHold.status == TherapyStatus.PAUSED
                                     ).order_by(TherapyHold.at).limit(1)
    return uow.session.execute(stmt).scalar_one_or_none()


def release_paused(uow: UnitOfWork, therapy_id: str, *, settings: AlertsSettings,
                   ended: str) -> list[Alert]:
    """A pause that ends (the therapy resumed or stopped): every firing alert it held is paged
    now, once (or held by a silence in force); its row lock and the cleared `held_by_therapy`
    make a repeat, or the silence sweep at the same time, page nothing more."""
    stmt = (select(Alert).where(Alert.held_by_therapy == therapy_id,
                                Alert.status == AlertStatus.FIRING).order_by(Alert.id))
    if is_postgres(uow.session):
        stmt = stmt.with_for_update()
    alerts = list(uow.session.execute(stmt).scalars())
    for alert in alerts:
        timeline(uow, alert, SYSTEM, "pause_ended", {"therapy_id": therapy_id, "therapy": ended})
        page_from_level_one(uow, alert, settings=settings, reason=f"its therapy {ended}")
    # those acknowledged or resolved meanwhile are no longer held either (a woken one pages)
    uow.session.execute(update(Alert).where(Alert.held_by_therapy == therapy_id)
                        .values(held_by_therapy=None).execution_options(synchronize_session=False))
    return alerts


def schedule_for(uow: UnitOfWork, center: str | None) -> OncallSchedule | None:
    """The center's on-call, else the `default` one, else None."""
    schedule = _schedule(uow, center) if center else None
    return schedule or _schedule(uow, DEFAULT_CENTER)


def _schedule(uow: UnitOfWork, center: str) -> OncallSchedule | None:
    # kept for the transaction: the session's identity map holds an unchanged row weakly (it
    # is read again for every alert of a batch), and a centre without one is read again too
    return txcache.cached(uow.session, f"oncall:{center}", OncallSchedule,
                          lambda: uow.session.get(OncallSchedule, center))


def _plan_level(uow: UnitOfWork, alert: Alert, level: int, *, reason: str,
                schedule: OncallSchedule | None) -> bool:
    """Write a pending page to whoever holds `level` now; say on the timeline when nobody can be."""
    if schedule is None:
        timeline(uow, alert, SYSTEM, "not_paged",
                 {"level": level, "reason": f"no on-call configured for center {alert.center}"})
        log.warning("page.no_oncall", alert_id=alert.id, level=level)
        return False
    levels = levels_from_json(schedule.levels)
    if level > len(levels):
        timeline(uow, alert, SYSTEM, "escalation_exhausted",
                 {"level": level, "levels": len(levels), "reason": reason})
        log.warning("page.escalation_exhausted", alert_id=alert.id, level=level)
        return False
    now = uow.now()
    member = shift_at(levels[level - 1], level, now).member
    notification = Notification(
        id=new_id(), alert_id=alert.id, level=level, channel=member.channel,
        recipient=member.name, address=member.address, status=NotificationStatus.PENDING, attempts=0,
        created_at=now, next_attempt_at=now, oncall_center=schedule.center,
        traceparent=tracing.current_traceparent(),
        fallbacks=[{"channel": f.channel, "address": f.address} for f in member.fallbacks] or None,
    )
    uow.session.add(notification)
    alert.escalation_level = max(alert.escalation_level, level)
    timeline(uow, alert, SYSTEM, "page_planned",
             {"level": level, "recipient": member.name, "channel": member.channel,
              "notification_id": notification.id, "reason": reason})
    return True


def _arm_escalation(uow: UnitOfWork, alert: Alert, *, schedule: OncallSchedule | None,
                    settings: AlertsSettings) -> None:
    """A firing critical alert pages its next level after the escalation delay, while levels remain."""
    if schedule is None or alert.severity != Severity.CRITICAL or alert.status != AlertStatus.FIRING:
        alert.next_escalation_at = None
        return
    if alert.escalation_level >= len(schedule.levels):
        alert.next_escalation_at = None
        return
    delay = (schedule.escalation_delay_seconds
             or centers.effective_settings(uow, settings, alert.center).escalation_delay_seconds)
    alert.next_escalation_at = uow.now() + timedelta(seconds=delay)


# ---- the sweep -----------------------------------------------------------------------------

def _due_alerts(uow: UnitOfWork, due_at: InstrumentedAttribute[datetime | None],
                status: AlertStatus) -> list[Alert]:
    """Alerts in `status` whose `due_at` has come, oldest first, locked (skipped when another
    worker holds them)."""
    stmt = (select(Alert)
            .where(due_at.is_not(None), due_at <= uow.now(), Alert.status == status)
            .order_by(due_at).limit(CLAIM_BATCH))
    if is_postgres(uow.session):
        stmt = stmt.with_for_update(skip_locked=True)
    return list(uow.session.execute(stmt).scalars())


def escalate_due(uow_factory: UnitOfWorkFactory, *, settings: AlertsSettings) -> int:
    """Page the next level of every firing critical alert whose escalation time has come."""
    with uow_factory() as uow:
        alerts = _due_alerts(uow, Alert.next_escalation_at, AlertStatus.FIRING)
        for alert in alerts:
            schedule = schedule_for(uow, alert.center)
            waited = (schedule.escalation_delay_seconds if schedule
                      else settings.escalation_delay_seconds)
            _page_level(uow, alert, alert.escalation_level + 1, schedule=schedule,
                        settings=settings, reason=f"unacknowledged for {waited} s")
        uow.commit()
        return len(alerts)


def ack_timeout_seconds(uow: UnitOfWork, alert: Alert, *, settings: AlertsSettings) -> int:
    """How long an acknowledged alert may stay unresolved before it fires again: its centre's
    on-call table says, else the centre's own settings, else HAI_ACK_TIMEOUT_SECONDS."""
    schedule = schedule_for(uow, alert.center)
    if schedule is not None and schedule.ack_timeout_seconds:
        return schedule.ack_timeout_seconds
    return centers.effective_settings(uow, settings, alert.center).ack_timeout_seconds


def wake_due(uow_factory: UnitOfWorkFactory, *, settings: AlertsSettings) -> int:
    """Re-notify: every acknowledged (or snoozed) alert still unresolved at its `wake_at` fires
    again and pages level 1 again, its escalation starting over."""
    with uow_factory() as uow:
        alerts = _due_alerts(uow, Alert.wake_at, AlertStatus.ACKNOWLEDGED)
        for alert in alerts:
            entry = {"acknowledged_by": alert.acknowledged_by,
                     "acknowledged_at": alert.acknowledged_at.isoformat() if alert.acknowledged_at else None,
                     "wake_at": alert.wake_at.isoformat() if alert.wake_at else None}
            alert.status, alert.wake_at, alert.escalation_level = AlertStatus.FIRING, None, 0
            alert.acknowledged_by = alert.acknowledged_at = None
            timeline(uow, alert, SYSTEM, "woke", entry)
            uow.publish(alert_data(alert, AlertRaisedData), subject=alert.id)
            page_from_level_one(uow, alert, settings=settings,
                                reason="acknowledged but not resolved in time")
        uow.commit()
        return len(alerts)


def release_held(uow_factory: UnitOfWorkFactory, *, settings: AlertsSettings) -> int:
    """Holds that end: every firing alert a silence held back, once that silence has ended, is
    paged now (or held by another silence still in force)."""
    with uow_factory() as uow:
        now = uow.now()
        stmt = (select(Alert)
                .join(Silence, Silence.id == Alert.silenced_by)
                .where(Alert.silenced_by.is_not(None), Alert.status == AlertStatus.FIRING,
                       Silence.ends_at <= now)
                .order_by(Silence.ends_at, Alert.id).limit(CLAIM_BATCH))
        if is_postgres(uow.session):
            stmt = stmt.with_for_update(skip_locked=True, of=Alert)
        alerts = list(uow.session.execute(stmt).scalars())
        for alert in alerts:
            timeline(uow, alert, SYSTEM, "silence_ended", {"silence_id": alert.silenced_by})
            alert.silenced_by = None
            page_from_level_one(uow, alert, settings=settings, reason="its silence ended")
        uow.commit()
        return len(alerts)


@dataclass(frozen=True)
class Claim:
    """A page this worker holds the lease of."""

    token: str
    page: PageMessage
    traceparent: str | None = None
    # every page the message carries (one, or a storm's list for one recipient), first = page's
    notification_ids: tuple[str, ...] = ()
    # a critical page's message sent although its recipient had their messages of the minute
    past_storm_limit: bool = False


def lease_seconds(settings: AlertsSettings) -> float:
    """How long a claim holds: comfortably more than one send may take."""
    return settings.page_timeout_seconds * 3 + 5


def claim_due(uow_factory: UnitOfWorkFactory, *, settings: AlertsSettings,
              limit: int = CLAIM_BATCH, alert_ids: Collection[str] | None = None) -> list[Claim]:
    """Claim due pages (pending, retrying, or sending with an expired lease) and commit the claim;
    with `alert_ids`, only the pages of those alerts (the urgent lane).

    Without `alert_ids`, the first page of an abnormal flow younger than
    HAI_PAGER_URGENT_GRACE_SECONDS is left to the urgent lane.

    Storms: a recipient gets at most HAI_PAGE_RATE_PER_MINUTE page messages a minute. When more
    pages are due for one than that leaves room for, they go as one page listing them all
    (critical ones first); when no room is left, they wait until the minute frees one (and then
    go together). A critical page never waits for the limit: with no room left, its recipient's
    due pages go as one message past it, the critical first (`past_storm_limit`)."""
    with uow_factory() as uow:
        claims = claim_in(uow, settings=settings, limit=limit, alert_ids=alert_ids)
        uow.commit()
    return claims


def claim_in(uow: UnitOfWork, *, settings: AlertsSettings, limit: int = CLAIM_BATCH,
             alert_ids: Collection[str] | None = None) -> list[Claim]:
    """`claim_due`'s claim, staged in the caller's transaction: the claims hold (and may be
    sent) only once it commits (`PagerKick.page_at_commit`: a consumer's own)."""
    claims: list[Claim] = []
    now = uow.now()
    # one statement finds and locks the pages, with the signing secret of each one's on-call:
    # they are chosen and locked by their ids alone (the inner query), so that behind a burst's
    # thousands of due pages only ids and sort keys are sorted, and only the chosen rows are
    # read whole (every due row read whole and sorted, each sized for the storm limit: ~75 ms
    # of the database's CPU a pass at 1,400 due pages, in each of the burst's passes). A page
    # that another pass changed after this statement began is read as it was then: the claim's
    # compare-and-set leaves it to that pass
    chosen = (select(Notification.id).join(Alert, Alert.id == Notification.alert_id)
              .where(_due(now)).order_by(*CLAIM_ORDER).limit(limit))
    chosen = _of_this_pass(uow, chosen, now=now, settings=settings, alert_ids=alert_ids)
    stmt = (select(Notification, Alert, OncallSchedule.webhook_secret)
            .join(Alert, Alert.id == Notification.alert_id)
            .outerjoin(OncallSchedule, OncallSchedule.center == Notification.oncall_center)
            .where(Notification.id.in_(chosen.scalar_subquery())).order_by(*CLAIM_ORDER))
    by_recipient: dict[Recipient, list[tuple[Notification, Alert]]] = {}
    secrets: dict[str, str | None] = {}
    for notification, alert, secret in uow.session.execute(stmt).all():
        if alert.status != AlertStatus.FIRING:
            if _set_if_unchanged(uow, notification, status=NotificationStatus.CANCELLED,
                                 claimed_until=None,
                                 error=f"alert {alert.status} before the page went out"):
                timeline(uow, alert, SYSTEM, "page_cancelled",
                         {"notification_id": notification.id, "alert_status": alert.status})
            continue
        key = (notification.recipient, notification.channel, notification.address)
        by_recipient.setdefault(key, []).append((notification, alert))
        if notification.oncall_center:
            secrets[notification.id] = secret
    rooms = _rooms_left(uow, by_recipient, now=now, settings=settings)
    for key, group in by_recipient.items():
        left, frees_at = rooms[key]
        if len(group) <= left:
            claims.extend(c for c in (_claim(uow, [row], now=now, settings=settings,
                                             secrets=secrets) for row in group) if c is not None)
            continue
        # one message: its main `alert` the most severe (the claim's order: MOST_SEVERE_FIRST)
        past_limit = left <= 0
        if past_limit and group[0][1].severity != Severity.CRITICAL:
            _hold(uow, key, now=now, until=frees_at, settings=settings, alert_ids=alert_ids)
            continue
        claim = _claim(uow, group[:settings.page_group_max], now=now, settings=settings,
                       secrets=secrets, past_storm_limit=past_limit)
        if claim is not None and past_limit:
            log.warning("page.past_storm_limit", notification_id=claim.page.notification_id,
                        recipient=claim.page.recipient, pages=len(claim.notification_ids))
        claims.extend([claim] if claim is not None else [])
    return claims


S = TypeVar("S", bound="Select[*tuple[Any, ...]]")


def _of_this_pass(uow: UnitOfWork, stmt: S, *, now: datetime, settings: AlertsSettings,
                  alert_ids: Collection[str] | None) -> S:
    """A pass's query of due pages narrowed to what the pass takes: the urgent lane
    (`alert_ids`) those alerts' pages only, any other pass all but the urgent lane's young
    ones; locked, skipping those another pass has locked (on PostgreSQL)."""
    if alert_ids is not None:
        stmt = stmt.where(Notification.alert_id.in_(sorted(alert_ids)))
    elif settings.pager_urgent_grace_seconds:
        stmt = stmt.where(~_urgent_lanes(now, settings.pager_urgent_grace_seconds))
    if is_postgres(uow.session):
        stmt = stmt.with_for_update(skip_locked=True, of=Notification)
    return stmt


# the claim takes the most severe pages first: behind a burst's thousands of due warnings a
# critical page is in the first pass's batch, not in the fortieth, and a storm's message leads
# with it (the oldest due first otherwise)
MOST_SEVERE_FIRST = case({s.value: -s.rank for s in Severity}, value=Alert.severity, else_=0)
# the claim's order, the same in its inner query (which pages) and its outer (their order in
# a storm's message): ties (a batch's alerts share their time) by pump, then page
CLAIM_ORDER = (MOST_SEVERE_FIRST, Notification.next_attempt_at, Alert.pump_serial, Notification.id)


def _due(now: datetime) -> ColumnElement[bool]:
    """Pages due now: waiting for their time, or claimed by a worker whose lease ran out."""
    waiting = (NotificationStatus.PENDING, NotificationStatus.RETRYING)
    return ((Notification.status.in_(waiting) & (Notification.next_attempt_at <= now))
            | ((Notification.status == NotificationStatus.SENDING) & (Notification.claimed_until <= now)))


def _urgent_lanes(now: datetime, grace_seconds: float) -> ColumnElement[bool]:
    """The first page of an abnormal flow, planned less than the grace ago: the urgent lane's."""
    return and_(Alert.kind == AlertKind.FLOW_ABNORMAL, Notification.level == 1,
                Notification.status == NotificationStatus.PENDING,
                Notification.created_at > now - timedelta(seconds=grace_seconds))


Recipient = tuple[str, str, str]  # a page's (recipient, channel, address)


def _rooms_left(uow: UnitOfWork, recipients: Collection[Recipient], *, now: datetime,
                settings: AlertsSettings) -> dict[Recipient, tuple[int, datetime]]:
    """The storm limit's room of each recipient of a pass (`_room_left`), in one statement for
    them all: of each, the latest page messages of the last minute, no more than the limit
    allows (a message is its first page: `MESSAGES_SENT`, with an index of its own), newest
    first. Until 2026-12-04 every page sent to the recipient in the minute was counted, a
    storm's grouped ones included: behind a burst's thousands that was ~2 ms of the database
    at each abnormal flow's claim (the urgent lane sizes the room too), and a statement per page
    row before 2026-12-03."""
    if not recipients:
        return {}
    keys = sorted(set(recipients))
    since = now - timedelta(seconds=RATE_WINDOW_SECONDS)
    latest = [select(literal(i).label("k"), Notification.sent_at)
              .where(Notification.recipient == name, Notification.channel == channel,
                     Notification.address == address, text(MESSAGES_SENT),
                     Notification.sent_at > since)
              .order_by(Notification.sent_at.desc()).limit(settings.page_rate_per_minute)
              .subquery() for i, (name, channel, address) in enumerate(keys)]
    parts = [select(part.c.k, part.c.sent_at) for part in latest]
    sent: dict[int, list[datetime]] = {}
    for k, sent_at in uow.session.execute(parts[0] if len(parts) == 1 else union_all(*parts)):
        sent.setdefault(k, []).append(sent_at)
    return {key: _room_left(len(sent.get(i, ())), min(sent.get(i, ()), default=None), now=now,
                            settings=settings)
            for i, key in enumerate(keys)}


def _room_left(messages: int, oldest: datetime | None, *, now: datetime,
               settings: AlertsSettings) -> tuple[int, datetime]:
    """How many more page messages the recipient may get in this minute, of the latest
    `messages` (no more than the limit) the oldest sent at `oldest`; and when that one stops
    counting (the room frees then: with the limit reached, that is the limit-th latest)."""
    return (settings.page_rate_per_minute - messages,
            (oldest or now) + timedelta(seconds=RATE_WINDOW_SECONDS))


def _hold(uow: UnitOfWork, recipient: tuple[str, str, str], *, now: datetime, until: datetime,
          settings: AlertsSettings, alert_ids: Collection[str] | None) -> None:
    """The recipient had their page messages for this minute and none of their due pages is
    critical: all their due pages wait until one frees, in one statement (not only those of
    this pass: a burst's thousands are held at once, not fifty a pass, each pass of every
    worker claiming and holding the next fifty), each with `page_held` on its timeline. Only
    pages still due and not locked by another pass are held (on PostgreSQL, SKIP LOCKED); a
    page whose claim's lease ran out (`sending`) waits as `retrying`, to be claimed again. The
    urgent lane (`alert_ids`) holds only its alerts' pages, as it claims only those."""
    name, channel, address = recipient
    due = (select(Notification.id).join(Alert, Alert.id == Notification.alert_id)
           .where(Notification.recipient == name, Notification.channel == channel,
                  Notification.address == address, _due(now), Alert.severity != Severity.CRITICAL,
                  # a page of an alert no longer firing: the next pass cancels it
                  Alert.status == AlertStatus.FIRING))
    due = _of_this_pass(uow, due, now=now, settings=settings, alert_ids=alert_ids)
    held = uow.session.execute(
        update(Notification).where(Notification.id.in_(due.scalar_subquery()), _due(now))
        .values(next_attempt_at=until, claimed_until=None,
                status=case((Notification.status == NotificationStatus.SENDING,
                             NotificationStatus.RETRYING), else_=Notification.status))
        .returning(Notification.id, Notification.alert_id)
        .execution_options(synchronize_session=False)).all()
    reason = f"{settings.page_rate_per_minute} pages a minute to {name}"
    uow.session.add_all([
        AlertEvent(alert_id=alert_id, at=uow.now(), actor=SYSTEM, action="page_held",
                   details={"notification_id": notification_id, "until": until.isoformat(),
                            "reason": reason})
        for notification_id, alert_id in held])


def _claim(uow: UnitOfWork, group: list[tuple[Notification, Alert]], *, now: datetime,
           settings: AlertsSettings, secrets: dict[str, str | None],
           past_storm_limit: bool = False) -> Claim | None:
    """Claim the pages of one message (one page, or a storm's list for one recipient);
    `secrets`: the signing secrets the claim's statement read, by page; `past_storm_limit`: a
    critical page's message that its recipient's full minute does not hold."""
    token = new_id()
    taken = _set_each_if_unchanged(
        uow, [n for n, _ in group], status=NotificationStatus.SENDING, claim_token=token,
        claimed_until=now + timedelta(seconds=lease_seconds(settings)),
        attempts=Notification.attempts + 1)
    held = [(n, a) for n, a in group if n.id in taken]  # else: another worker took it
    if not held:
        return None
    return _message(uow, held, token=token, settings=settings, secrets=secrets,
                    past_storm_limit=past_storm_limit)


def _message(uow: UnitOfWork, held: list[tuple[Notification, Alert]], *, token: str,
             settings: AlertsSettings, secrets: dict[str, str | None],
             past_storm_limit: bool) -> Claim:
    """The claim of one message whose pages this pass holds (`token`), the first its page."""
    notification, alert = held[0]
    fallbacks = tuple((f["channel"], f["address"]) for f in notification.fallbacks or ())
    webhook = any(channel == "webhook" for channel, _ in
                  ((notification.channel, notification.address), *fallbacks))
    return Claim(token=token, page=PageMessage(
        notification_id=notification.id, channel=notification.channel,
        address=notification.address, recipient=notification.recipient,
        level=notification.level, alert=page_alert(alert_json(alert)),
        ack_url=ack_url(settings, alert.id, notification.id),
        webhook_secret=((secrets[notification.id] if notification.id in secrets
                         else signing_secret(uow, notification, alert)) if webhook else None),
        fallbacks=fallbacks,
        others=tuple({**page_alert(alert_json(a)), "notification_id": n.id,
                      "ack_url": ack_url(settings, a.id, n.id)} for n, a in held[1:]),
    ), traceparent=notification.traceparent, notification_ids=tuple(n.id for n, _ in held),
        past_storm_limit=past_storm_limit)


def claim_fresh(uow: UnitOfWork, *, settings: AlertsSettings,
                alert_ids: Collection[str]) -> list[Claim] | None:
    """The urgent lane's claim of the pages of alerts this transaction raised itself, none yet
    written (`PagerKick.page_at_commit`): no other pass can see them before it commits, so they
    are chosen from memory and go to the database claimed (`sending`, with the lease and the
    token), in the INSERT that writes them, without the SELECT that finds and locks them and the
    UPDATE that claims them (one abnormal flow's claim cost the flow worker ~5 ms of CPU and two
    statements of the alerts database, on the page's path). The storm limit's room is read as
    `claim_in` reads it, and decides as there: each page its own message while the room holds
    them, else one message (past the limit when the room is full and its first page is critical).
    None, leaving it to `claim_in`: an alert that is not new (a repeat whose severity rose: its
    older pages are rows), one no longer firing (resolved later in the batch: `claim_in` cancels
    its page), or a recipient whose full minute would hold a page (`_hold`'s statement)."""
    new = list(uow.session.new)
    alerts = {a.id: a for a in new if isinstance(a, Alert)}
    if not all(alerts.get(i) is not None and alerts[i].status == AlertStatus.FIRING
               for i in alert_ids):
        return None
    now = uow.now()
    by_recipient: dict[Recipient, list[tuple[Notification, Alert]]] = {}
    for n in sorted((n for n in new if isinstance(n, Notification) and n.alert_id in alert_ids
                     and n.status == NotificationStatus.PENDING
                     and n.next_attempt_at is not None and n.next_attempt_at <= now),
                    key=lambda n: _claim_order(n, alerts[n.alert_id])):
        by_recipient.setdefault((n.recipient, n.channel, n.address), []).append(
            (n, alerts[n.alert_id]))
    if not by_recipient:
        return []
    # its statements (the room; a signing secret not yet loaded) in a savepoint of their own,
    # nothing flushed before them (the pages go to the database claimed), so that a failure
    # leaves the transaction whole: the alerts are raised, and a kick after the commit claims
    # their pages
    messages: list[tuple[list[tuple[Notification, Alert]], bool]] = []
    with uow.session.no_autoflush, uow.session.connection().begin_nested():
        rooms = _rooms_left(uow, by_recipient, now=now, settings=settings)
        for key, group in by_recipient.items():
            left, _ = rooms[key]
            if len(group) <= left:
                messages.extend(([row], False) for row in group)
            elif left > 0 or group[0][1].severity == Severity.CRITICAL:
                messages.append((group[:settings.page_group_max], left <= 0))
            else:
                return None
        # the messages first, then the claim on the pages (a failure before it claims nothing)
        claims = [_message(uow, held, token=new_id(), settings=settings, secrets={},
                           past_storm_limit=past_limit) for held, past_limit in messages]
    claimed_until = now + timedelta(seconds=lease_seconds(settings))
    for claim, (held, _) in zip(claims, messages, strict=True):
        for n, _alert in held:
            n.status, n.claim_token, n.claimed_until = (NotificationStatus.SENDING, claim.token,
                                                        claimed_until)
            n.attempts += 1
        if claim.past_storm_limit:
            log.warning("page.past_storm_limit", notification_id=claim.page.notification_id,
                        recipient=claim.page.recipient, pages=len(held))
    return claims


def _claim_order(n: Notification, alert: Alert) -> tuple[Any, ...]:
    """`CLAIM_ORDER` in memory (a pump serial that is NULL last, as PostgreSQL sorts it)."""
    return (-Severity(alert.severity).rank, n.next_attempt_at, alert.pump_serial is None,
            alert.pump_serial or "", n.id)


def ack_url(settings: AlertsSettings, alert_id: str, notification_id: str) -> str:
    """The page's link to the alert on the dashboard; opening it marks the page `seen`."""
    return f"{settings.dashboard_url.rstrip('/')}/alerts/{alert_id}?n={notification_id}"


def signing_secret(uow: UnitOfWork, n: Notification, alert: Alert) -> str | None:
    """The secret of the on-call table that planned the page (pages planned before tables had
    one named: the table that would plan it now)."""
    schedule = (uow.session.get(OncallSchedule, n.oncall_center) if n.oncall_center
                else schedule_for(uow, alert.center))
    return schedule.webhook_secret if schedule is not None else None


def _set_each_if_unchanged(uow: UnitOfWork, pages: Sequence[Notification],
                           **values: Any) -> set[str]:
    """Compare-and-set of several pages on (status, attempts, claim_token) as this pass read
    them, in one statement (a storm's message of 50: one UPDATE, not 50): safe even where SKIP
    LOCKED is not; the ids of those it set."""
    if not pages:
        return set()
    as_read = [(n.id, n.status, n.attempts, n.claim_token or "") for n in pages]
    return set(uow.session.scalars(
        update(Notification)
        .where(Notification.id.in_([n.id for n in pages]),
               tuple_(Notification.id, Notification.status, Notification.attempts,
                      func.coalesce(Notification.claim_token, "")).in_(as_read))
        .values(**values).returning(Notification.id)
        .execution_options(synchronize_session=False)))


def _set_if_unchanged(uow: UnitOfWork, n: Notification, **values: Any) -> bool:
    """Compare-and-set on (status, attempts, claim_token): safe even where SKIP LOCKED is not."""
    return n.id in _set_each_if_unchanged(uow, [n], **values)


def record_result(uow_factory: UnitOfWorkFactory, claim: Claim, error: str | None, *,
                  settings: AlertsSettings, delivery: Delivery | None = None) -> str:
    """Record how a send went, for each page the message carried that this worker still holds
    the claim of; returns the new status (of the first)."""
    return record_results(uow_factory, [(claim, error, delivery)], settings=settings)[0]


Sent = tuple[Claim, str | None, Delivery | None]  # a claim, its send's error (None: sent), route


def record_results(uow_factory: UnitOfWorkFactory, sent: Sequence[Sent], *,
                   settings: AlertsSettings, lane: str | None = None) -> list[str]:
    """Record how the sends of one pass went, all in one transaction (one commit for the pass,
    not one per page: the lane is free for the next pages sooner); the new status of each
    claim's first page, in order. Each page is recorded only while this worker holds its claim.
    `lane`: the pager's lane that sent them (`urgent`), said on the timeline's `paged`."""
    if not sent:
        return []
    with uow_factory() as uow:
        # the pages' PageSent events and audit go at the commit, one statement per table: a
        # storm's message of 50 pages is not 50 outbox INSERTs, each flushing the page before it
        uow.defer_platform_writes()
        pages = _pages_to_record(uow, [notification_id for claim, _, _ in sent
                                       for notification_id in _carried(claim)])
        statuses = [[_record(uow, *pages[notification_id], claim, error, settings=settings,
                             delivery=delivery, lane=lane)
                     for notification_id in _carried(claim)]
                    for claim, error, delivery in sent]
        uow.commit()
    return [first for first, *_ in statuses]


def _carried(claim: Claim) -> tuple[str, ...]:
    """The pages a claim's message carried (one, or a storm's list)."""
    return claim.notification_ids or (claim.page.notification_id,)


def _pages_to_record(uow: UnitOfWork, ids: Sequence[str]) -> dict[str, tuple[Notification, Alert]]:
    """The pages of a pass with their alerts, locked, in one statement (in id order, so that two
    transactions locking several pages never wait on each other crosswise)."""
    stmt = (select(Notification, Alert).join(Alert, Alert.id == Notification.alert_id)
            .where(Notification.id.in_(sorted(set(ids)))).order_by(Notification.id))
    if is_postgres(uow.session):
        stmt = stmt.with_for_update(of=Notification)
    return {n.id: (n, alert) for n, alert in uow.session.execute(stmt).all()}


def _record(uow: UnitOfWork, n: Notification, alert: Alert, claim: Claim, error: str | None, *,
            settings: AlertsSettings, delivery: Delivery | None, lane: str | None) -> str:
    if n.status != NotificationStatus.SENDING or n.claim_token != claim.token:
        log.warning("page.claim_lost", notification_id=n.id, status=n.status)
        return "claim_lost"
    now = uow.now()
    n.claimed_until = None
    n.claim_token = None
    if error is None:
        delivery = delivery or Delivery()
        n.status, n.sent_at, n.error = NotificationStatus.SENT, now, None
        n.sent_route, n.message_id = delivery.route, claim.page.notification_id
        channel = claim.page.routes()[delivery.route][0]
        entry: dict[str, Any] = {"notification_id": n.id, "level": n.level,
                                 "recipient": n.recipient, "channel": channel,
                                 "attempts": n.attempts}
        if delivery.route:
            entry.update(route=delivery.route, failed=list(delivery.failed))
        if claim.page.others:
            entry.update(message_id=n.message_id, alerts_in_page=len(claim.page.others) + 1)
        if lane:
            entry.update(lane=lane)
        if claim.past_storm_limit:
            entry.update(past_storm_limit=True)
        timeline(uow, alert, SYSTEM, "paged", entry)
        if delivery.delivered:
            advance_receipt(uow, n, alert, NotificationStatus.DELIVERED, actor=SYSTEM)
        uow.publish(notification_data(n, PageSentData, center=alert.center), subject=alert.id)
    elif n.attempts >= settings.page_max_attempts:
        n.status, n.error, n.next_attempt_at = NotificationStatus.FAILED, error, None
        timeline(uow, alert, SYSTEM, "page_failed", {"notification_id": n.id, "level": n.level,
                                                     "attempts": n.attempts, "error": error})
        uow.publish(notification_data(n, PageFailedData, center=alert.center), subject=alert.id)
        log.error("page.failed", notification_id=n.id, alert_id=alert.id, level=n.level,
                  attempts=n.attempts)
        if alert.status == AlertStatus.FIRING and alert.escalation_level <= n.level:
            _page_level(uow, alert, n.level + 1, schedule=schedule_for(uow, alert.center),
                        settings=settings,
                        reason=f"level {n.level} page failed after {n.attempts} attempts")
    else:
        delay = next_attempt_delay_seconds(attempts=n.attempts,
                                           first_retry_seconds=settings.page_first_retry_seconds)
        n.status, n.error = NotificationStatus.RETRYING, error
        n.next_attempt_at = now + timedelta(seconds=delay)
        timeline(uow, alert, SYSTEM, "page_attempt_failed",
                 {"notification_id": n.id, "attempt": n.attempts, "error": error,
                  "next_attempt_at": n.next_attempt_at.isoformat()})
    return str(n.status)


def send(channels: Channels, claim: Claim) -> Delivery | str:
    """Send one claimed page: how it got through, or the error text."""
    with tracing.span(f"page {claim.page.channel}", parent=claim.traceparent, kind="producer",
                      **{"hai.notification_id": claim.page.notification_id}):
        return _send(channels, claim)


def _send(channels: Channels, claim: Claim) -> Delivery | str:
    try:
        return channels.send(claim.page)
    except SendError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - any failure of a channel is a failed attempt
        return f"{type(exc).__name__}: {exc}"


# ---- the recipient's read status -----------------------------------------------------------

RECEIPT_TIMES = {NotificationStatus.DELIVERED: "delivered_at", NotificationStatus.SEEN: "seen_at",
                 NotificationStatus.ACKNOWLEDGED: "acknowledged_at"}
RECEIPT_ACTIONS = {NotificationStatus.DELIVERED: "page_delivered", NotificationStatus.SEEN: "page_seen",
                   NotificationStatus.ACKNOWLEDGED: "page_acknowledged"}


def advance_receipt(uow: UnitOfWork, n: Notification, alert: Alert, status: NotificationStatus, *,
                    actor: str) -> bool:
    """Move a page that reached its recipient on to `status` (delivered, seen, acknowledged),
    never back; record the time and a timeline entry the first time. False when nothing changed."""
    if n.status not in RECEIPT_STATUSES or getattr(n, RECEIPT_TIMES[status]) is not None:
        return False
    setattr(n, RECEIPT_TIMES[status], uow.now())
    if RECEIPT_STATUSES.index(status) > RECEIPT_STATUSES.index(NotificationStatus(n.status)):
        n.status = status
    timeline(uow, alert, actor, RECEIPT_ACTIONS[status],
             {"notification_id": n.id, "level": n.level, "recipient": n.recipient})
    return True


def sweep_once(runtime: ServiceRuntime, *, timed: bool = True,
               alert_ids: Collection[str] | None = None,
               recorder: Executor | None = None) -> dict[str, int]:
    """One pass: escalate what is due, re-notify and release what is due (`timed`; a kick after
    a consumer's commit leaves those to the job's next pass, to page the new alert sooner), claim
    due pages, send them in parallel, record results. With `alert_ids`, only the due pages of
    those alerts (no escalation). With `recorder`, the results are recorded on it after this
    returns (the urgent lane's: its next pages are claimed and sent while the last ones' results
    are written), and the facts count only the claims."""
    settings = runtime.settings
    everything = alert_ids is None
    escalated = escalate_due(runtime.uow_factory, settings=settings) if everything else 0
    woken = wake_due(runtime.uow_factory, settings=settings) if timed and everything else 0
    released = (release_held(runtime.uow_factory, settings=settings) if timed and everything
                else 0)
    claims = claim_due(runtime.uow_factory, settings=settings, alert_ids=alert_ids)
    facts: dict[str, int] = {"escalated": escalated}
    # re-notified and released alerts, said only when there were some
    facts.update({k: v for k, v in (("woken", woken), ("released", released)) if v})
    return send_claimed(runtime, claims, lane=None if everything else URGENT_LANE,
                        recorder=recorder, facts=facts)


def send_claimed(runtime: ServiceRuntime, claims: Sequence[Claim], *, lane: str | None = None,
                 recorder: Executor | None = None,
                 facts: dict[str, int] | None = None) -> dict[str, int]:
    """Send claimed pages (one on this thread, several in parallel) and record the results (on
    `recorder`, after this returns, when given); the pass's facts."""
    state = pager(runtime)
    channels = state.channels
    # several in parallel on the runtime's threads (made once; the urgent lane's own, so that
    # its pages never queue behind a bulk pass's in one process)
    senders = state.senders if lane is None else state.urgent_senders
    outcomes = ([send(channels, c) for c in claims] if len(claims) <= 1
                else list(senders.map(lambda c: send(channels, c), claims)))
    facts = {**(facts or {}), "claimed": len(claims), NotificationStatus.SENT: 0,
             NotificationStatus.RETRYING: 0, NotificationStatus.FAILED: 0, "claim_lost": 0}
    sent: list[Sent] = [(claim, outcome, None) if isinstance(outcome, str) else (claim, None, outcome)
                        for claim, outcome in zip(claims, outcomes, strict=True)]
    if recorder is not None and sent:
        recorder.submit(_record_in_background, runtime, sent, lane)
        return facts
    return _record_pass(runtime, sent, lane, facts)


def _record_pass(runtime: ServiceRuntime, sent: Sequence[Sent], lane: str | None,
                 facts: dict[str, int]) -> dict[str, int]:
    """Record a pass's results (one transaction) and count them in `facts`; failed attempts and
    pages given up on the metric."""
    statuses = record_results(runtime.uow_factory, sent, settings=runtime.settings, lane=lane)
    for (claim, _, _), status in zip(sent, statuses, strict=True):
        counted = NotificationStatus.SENT if status in RECEIPT_STATUSES else status
        facts[counted] = facts.get(counted, 0) + max(1, len(claim.notification_ids))
        if status in (NotificationStatus.RETRYING, NotificationStatus.FAILED):
            pager(runtime).page_failures.labels(channel=claim.page.channel, result=status).inc()
    return facts


def _record_in_background(runtime: ServiceRuntime, sent: Sequence[Sent], lane: str | None) -> None:
    """`_record_pass` on a recorder's thread: a failure is logged (the pages stay `sending`
    until their lease runs out; then the pager sweep sends them again: at least once)."""
    try:
        _record_pass(runtime, sent, lane, {})
    except Exception as exc:  # noqa: BLE001 - nothing above this thread would see it
        log.error("pager.record_failed", lane=lane, pages=len(sent),
                  notification_ids=[c.page.notification_id for c, _, _ in sent],
                  error=f"{type(exc).__name__}: {exc}")


def run_pager(runtime: ServiceRuntime) -> dict[str, Any]:
    """The pager job: one sweep; it also arms the after-commit kicks of this process's consumers
    (and, the first time, loads the apprise channel's plugins in the background)."""
    state = pager(runtime)
    if not state.kick.armed:
        state.channels.warm_up()
    state.kick.armed = state.urgent.armed = True
    return dict(sweep_once(runtime))


class PagerKick:
    """Runs a sweep in the background right after a consumer's commit raised an alert.

    Kicks coalesce (one pending at most; a kick during a sweep queues one more). The kick only
    lowers latency: the pager job's sweep over the database stays what guarantees the page. It is
    armed by the first run of the pager job, so only a process running the jobs kicks. A
    `targeted` kick sends only the pages of the alerts it was given, on a thread of its own: the
    pages of an abnormal flow go out at once, not behind the hundreds a sweep's burst planned;
    and its consumer claims them in its own transaction (`page_at_commit`), so that the page
    goes out as that commits, with no transaction of its own in between.
    """

    def __init__(self, runtime: ServiceRuntime, *, targeted: bool = False,
                 name: str = "alerts-pager-kick") -> None:
        self.runtime = runtime
        self.armed = False
        self.targeted = targeted
        self._pending = False
        self._alert_ids: set[str] = set()
        self._claims: list[Claim] = []
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        # a targeted kick records its pages' results on a thread of its own: the lane claims and
        # sends the next abnormal flow's page while the last one's result is written
        self._recorder = (ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-record")
                          if targeted else None)

    def kick(self, alert_ids: Iterable[str] = ()) -> None:
        """Ask for a sweep soon (of these alerts' pages, when targeted; no-op until armed)."""
        if not self.armed:
            return
        self._submit(alert_ids=alert_ids)

    def _submit(self, *, alert_ids: Iterable[str] = (), claims: Sequence[Claim] = ()) -> None:
        with self._lock:
            self._alert_ids.update(alert_ids)
            self._claims.extend(claims)
            if self._pending:
                return
            self._pending = True
        self._executor.submit(self._run)

    def page_at_commit(self, uow: UnitOfWork, alert_ids: Iterable[str]) -> None:
        """The targeted lane's way after a consumer raised these alerts (a kick after the commit
        otherwise): their due pages are claimed in the consumer's own transaction, as it
        commits (after its handlers, before its deferred rows), and sent once it has
        committed. A page then leaves without a claim's transaction of its own in between (its
        commit is the one that waits longest when the database is busy). The pages of alerts
        the transaction raised are claimed from memory and inserted claimed (`claim_fresh`);
        any other (a repeat whose severity rose), by `claim_in`. The claim's statements run in a
        savepoint: should they fail, the alerts are still raised, and a kick after the commit
        claims their pages as before. A worker killed between this commit and the send: the
        claim's lease runs out, and any pager pass sends the page (at least once, as ever)."""
        if not self.targeted:
            kick_after_commit(uow, self.kick, alert_ids)
            return
        if not self.armed:
            return
        session = uow.session
        pending = session.info.get(_TO_CLAIM)
        if pending is None:
            pending = session.info[_TO_CLAIM] = []
            # first among the commit's listeners: before the deferred audit and outbox rows
            sa_event.listen(session, "before_commit",
                            lambda _session: self._claim_before_commit(uow), once=True, insert=True)
        pending.extend(alert_ids)

    def _claim_before_commit(self, uow: UnitOfWork) -> None:
        alert_ids = set(uow.session.info.pop(_TO_CLAIM, ()))
        if not alert_ids:
            return
        settings = self.runtime.settings
        try:
            claims = claim_fresh(uow, settings=settings, alert_ids=alert_ids)
            if claims is None:
                with uow.session.begin_nested():
                    claims = claim_in(uow, settings=settings, alert_ids=alert_ids)
        except Exception as exc:  # noqa: BLE001 - the alerts count more than this page's speed
            log.warning("pager.page_at_commit_failed", alert_ids=sorted(alert_ids),
                        error=f"{type(exc).__name__}: {exc}")
            kick_after_commit(uow, self.kick, alert_ids)
            return
        if claims:
            sa_event.listen(uow.session, "after_commit",
                            lambda _session: self._send_after_commit(claims), once=True)

    def _send_after_commit(self, claims: Sequence[Claim]) -> None:
        try:
            self._submit(claims=claims)
        except Exception as exc:  # noqa: BLE001 - committed: the lease's end sends them
            log.error("pager.send_after_commit_failed",
                      notification_ids=[c.page.notification_id for c in claims],
                      error=f"{type(exc).__name__}: {exc}")

    def _run(self) -> None:
        with self._lock:
            self._pending = False
            alert_ids, self._alert_ids = self._alert_ids, set()
            claims, self._claims = self._claims, []
        try:
            if claims:
                send_claimed(self.runtime, claims, lane=URGENT_LANE, recorder=self._recorder)
            if self.targeted:
                if alert_ids:
                    sweep_once(self.runtime, alert_ids=alert_ids, timed=False,
                               recorder=self._recorder)
            else:
                sweep_once(self.runtime, timed=False)
        except Exception as exc:  # noqa: BLE001 - the job's next sweep tries again
            log.warning("pager.kick_failed", error=f"{type(exc).__name__}: {exc}")


_TO_CLAIM = "alerts.urgent_to_claim"  # a session's alerts whose pages it claims as it commits
_RAISED = "alerts.raised_ids"  # the session's alerts raised so far, for the kick after its commit


def kick_after_commit(uow: UnitOfWork, kick: Callable[[Iterable[str]], None],
                      alert_ids: Iterable[str]) -> None:
    """Wake the pager with these alerts once the transaction commits (the consumer commits
    after us; the pages are visible only then): one kick per transaction, naming them all."""
    raised = uow.session.info.get(_RAISED)
    if raised is None:
        raised = uow.session.info[_RAISED] = []
        sa_event.listen(uow.session, "after_commit",
                        lambda session: kick(session.info.pop(_RAISED, [])), once=True)
    raised.extend(alert_ids)


@dataclass
class Pager:
    """The paging parts of one alerts runtime, made once by its bootstrap (`attach`)."""

    channels: Channels
    kick: PagerKick
    # the flow queue's kick: targeted, on a thread of its own
    urgent: PagerKick
    # `hai_page_failures_total{channel,result}`: failed attempts (`retrying`) and pages given
    # up (`failed`), by channel; on /metrics from the start, before any page fails
    page_failures: Counter
    # `hai_heartbeat_ping_failures_total`: pings of HAI_HEARTBEAT_URL that did not get through
    heartbeat_failures: Counter
    # the threads that send a pass's pages in parallel, kept for the next pass
    senders: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(
        max_workers=MAX_PARALLEL_SENDS, thread_name_prefix="alerts-page-send"))
    urgent_senders: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(
        max_workers=MAX_PARALLEL_SENDS, thread_name_prefix="alerts-page-send-urgent"))

    @classmethod
    def attach_to(cls, runtime: ServiceRuntime) -> Pager:
        return runtime.attach(cls(
            channels=Channels(runtime.settings), kick=PagerKick(runtime),
            urgent=PagerKick(runtime, targeted=True, name="alerts-pager-urgent"),
            page_failures=Counter("hai_page_failures_total",
                                  "Failed page attempts by channel; result failed when given up",
                                  ["channel", "result"], registry=runtime.registry),
            heartbeat_failures=Counter("hai_heartbeat_ping_failures_total",
                                       "Pings of the external dead man's switch that failed",
                                       registry=runtime.registry)))


def pager(runtime: ServiceRuntime) -> Pager:
    """The runtime's paging parts."""
    return runtime.part(Pager)


def notification_data(n: Notification, event: type[N], *, center: str | None) -> N:
    """The notification as the event `event` (page sent, page failed) carries it, with the
    centre of its alert."""
    return event(
        id=n.id, alert_id=n.alert_id, level=n.level, channel=n.channel, recipient=n.recipient,
        status=NotificationStatus(n.status), attempts=n.attempts, sent_at=n.sent_at, error=n.error,
        center=center,
    )



# ---- heartbeat out -------------------------------------------------------------------------

def ping_heartbeat(runtime: ServiceRuntime) -> dict[str, Any]:
    """Tell the external dead man's switch (HAI_HEARTBEAT_URL) that paging is alive: its database
    answers and this job runs. A failed ping is logged and counted, never raised: the switch
    itself notices the silence."""
    settings = runtime.settings
    state = pager(runtime)
    target = httpx.URL(settings.heartbeat_url)
    try:
        with runtime.uow_factory() as uow:
            uow.session.execute(select(1))
            at = uow.now()
        response = state.channels.http.post(
            target, json={"service": runtime.name, "at": at.isoformat()},
            timeout=settings.page_timeout_seconds)
        if response.status_code >= 300:
            raise httpx.HTTPStatusError(f"HTTP {response.status_code}", request=response.request,
                                        response=response)
    except Exception as exc:  # noqa: BLE001 - a failed ping must never stop the job
        state.heartbeat_failures.inc()
        # the host only: the URL's path is often the switch's secret
        log.warning("heartbeat.ping_failed", host=target.host, error=type(exc).__name__)
        return {"ok": False}
    return {"ok": True}
