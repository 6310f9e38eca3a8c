"""How urgent an appointment is and whether a flow is abnormal, as of now (pure functions): the
judgements the API answers carry (`urgency`, `near_empty`, `flow_abnormal`), by the same
thresholds the sweep announces by, so the dashboard shows them and never re-derives them."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

Urgency = Literal["overdue", "due_today", "due_soon", "later"]


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA zone of that name (a centre's time zone)."""
    return ZoneInfo(name)


def urgency_of(*, due_at: datetime, now: datetime, due_soon_hours: float,
               time_zone: str = "UTC") -> Urgency:
    """`overdue` (due time past), `due_today` (later on the same day in the centre's time
    zone), `due_soon` (within the due-soon notice, the sweep's `refill.due_soon`) or `later`."""
    if due_at < now:
        return "overdue"
    tz = zone(time_zone)
    if due_at.astimezone(tz).date() == now.astimezone(tz).date():
        return "due_today"
    if due_at - now <= timedelta(hours=due_soon_hours):
        return "due_soon"
    return "later"


def is_near_empty(*, projected_empty_at: datetime | None, now: datetime,
                  near_empty_hours: float) -> bool:
    """Whether the pump runs dry within the near-empty margin (or already has): the sweep's
    `reservoir.near_empty`; False when no empty time is projected."""
    return projected_empty_at is not None \
        and projected_empty_at - now <= timedelta(hours=near_empty_hours)


def is_flow_abnormal(flow_deviation_pct: float | None, *, flow_warning_pct: float) -> bool | None:
    """Whether a measured flow lies outside the ±warning band around the labeled rate (alerts
    raises `flow_abnormal` by the same band); None when nothing was measured (a first fill)."""
    if flow_deviation_pct is None:
        return None
    return abs(flow_deviation_pct) > flow_warning_pct
