"""The centre's local time: what the dashboard shows and what nurses type (the APIs stay UTC).

Every zone lookup goes through `zone_for`: the centre's own `time_zone` (scheduling's centre
settings, read with the page's API client and kept a minute), else `HAI_TIME_ZONE`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

INPUT_FORMAT = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends and shows
_ISO_IN_TEXT = re.compile(
    r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})\b")


def valid_zone(name: str) -> ZoneInfo:
    """The IANA zone of that name, or ValueError naming what is wrong."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValueError(f"{name!r} is not an IANA time zone name (e.g. Europe/Paris, "
                         "America/New_York, UTC)") from exc


class CentreZones:
    """Each centre's own time zone name (None: it has none, or it could not be read), as
    scheduling's centre settings say, kept a while so that a page asks once a minute at most.
    A failed read is kept a shorter while: the page falls back to `HAI_TIME_ZONE` meanwhile."""

    def __init__(self, ttl_seconds: float = 60.0, failure_ttl_seconds: float = 10.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ttl_seconds = ttl_seconds
        self.failure_ttl_seconds = failure_ttl_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._known: dict[str, tuple[float, str | None]] = {}

    def own_zone(self, center: str, api: Any) -> str | None:
        """The centre's own zone name (cached), None when it has none or the API failed."""
        now = self._monotonic()
        with self._lock:
            known = self._known.get(center)
        if known is not None and known[0] > now:
            return known[1]
        name, ok = _read_own_zone(center, api)
        with self._lock:
            self._known[center] = (now + (self.ttl_seconds if ok else self.failure_ttl_seconds),
                                   name)
        return name

    def clear(self) -> None:
        with self._lock:
            self._known.clear()


def _read_own_zone(center: str, api: Any) -> tuple[str | None, bool]:
    """(the centre's own valid zone name or None, whether scheduling answered)."""
    from services.dashboard.api import ApiError  # api → plain → localtime: imported here

    try:
        found = api.get("scheduling", f"/v1/centers/{quote(center, safe='')}/settings")
    except ApiError:  # refused or unreachable: the deployment's zone serves meanwhile
        return None, False
    entry = ((found or {}).get("settings") or {}).get("time_zone") if isinstance(found, dict) \
        else None
    if not isinstance(entry, dict) or entry.get("source") != "center":
        return None, True  # the centre keeps the default: the dashboard's HAI_TIME_ZONE
    try:
        return valid_zone(str(entry.get("value"))).key, True
    except ValueError:
        return None, True


def zone_for(settings: Any, center: str | None = None, api: Any = None,
             zones: CentreZones | None = None) -> ZoneInfo:
    """The time zone of a centre: its own (asked of scheduling with `api`, kept in `zones`),
    else `HAI_TIME_ZONE`."""
    if center and api is not None:
        own = zones.own_zone(center, api) if zones is not None else _read_own_zone(center, api)[0]
        if own:
            return valid_zone(own)
    return valid_zone(getattr(settings, "time_zone", "UTC") or "UTC")


def to_local(when: datetime, zone: ZoneInfo) -> datetime:
    """An aware datetime in the zone (a naive one is taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(zone)


def utc_offset(when: datetime) -> str:
    """`UTC+01:00`, `UTC−05:00`, `UTC+05:45` of an aware local datetime."""
    offset = when.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "−"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{rest:02d}"


def zone_label(when: datetime) -> str:
    """The zone's abbreviation (`CET`, `EST`), or its offset where the zone has none (`+03`)."""
    name = when.tzname() or ""
    return utc_offset(when) if not name or name[0] in "+-" else name


def fmt_local(when: datetime | None, zone: ZoneInfo, *, offset: bool = False) -> str:
    """`2026-11-26 09:00 EST` (with `offset`: `2026-11-26 09:00 EST (UTC−05:00)`); — if absent."""
    if when is None:
        return "—"
    local = to_local(when, zone)
    text = f"{local:%Y-%m-%d %H:%M} {zone_label(local)}"
    if offset and not zone_label(local).startswith("UTC"):
        text += f" ({utc_offset(local)})"
    return text


def fmt_clock(when: datetime, zone: ZoneInfo) -> str:
    """`09:05 EST`: the "as of" of a live page."""
    local = to_local(when, zone)
    return f"{local:%H:%M} {zone_label(local)}"


def input_value(when: datetime, zone: ZoneInfo) -> str:
    """A `datetime-local` field's value: the local wall time, to the minute."""
    return to_local(when, zone).strftime(INPUT_FORMAT)


@dataclass(frozen=True)
class TypedTime:
    """A local time typed in a form: its UTC instant, or why it is not one."""

    utc: datetime | None
    error: str | None = None


def parse_local(text: str, zone: ZoneInfo) -> TypedTime:
    """A `datetime-local` value typed in the centre's zone, as UTC. A wall time the clocks skip
    (spring forward) is refused; one they pass twice (fall back) is the first, the earlier
    instant, as the nurse's watch read it before the change."""
    value = (text or "").strip()
    if not value:
        return TypedTime(None, "Enter the date and time")
    try:
        typed = datetime.fromisoformat(value)
    except ValueError:
        return TypedTime(None, "Enter the date and time as shown, e.g. 2026-11-02 09:30")
    if typed.tzinfo is not None:  # an explicit offset says which instant it is
        return TypedTime(typed.astimezone(UTC))
    local = typed.replace(tzinfo=zone, fold=0)
    back = local.astimezone(UTC).astimezone(zone)
    if back.replace(tzinfo=None) != typed:
        return TypedTime(None, f"{typed:%H:%M} does not exist on {typed:%Y-%m-%d} in {zone.key}: "
                               "the clocks moved forward then; enter the time again")
    return TypedTime(local.astimezone(UTC))


def localize_text(text: str, zone: ZoneInfo) -> str:
    """A sentence with the ISO-8601 timestamps in it written as local times (an alert's summary
    comes from the service with UTC instants)."""
    def local(match: re.Match[str]) -> str:
        raw = match.group(0).replace(" ", "T").replace("Z", "+00:00")
        try:
            return fmt_local(datetime.fromisoformat(raw), zone)
        except ValueError:
            return match.group(0)
    return _ISO_IN_TEXT.sub(local, text or "")
