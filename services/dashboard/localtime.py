"""The centre's local time: what the dashboard shows and what nurses type (the APIs stay UTC).

Every zone lookup goes through `zone_for`, so that per-centre settings can replace the single
`HAI_TIME_ZONE` in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
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


def zone_for(settings: Any, center: str | None = None) -> ZoneInfo:
    """The time zone of a centre (today one setting, `HAI_TIME_ZONE`, serves every centre)."""
    del center  # per-centre settings will choose here
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
