"""On-call rotations: pure arithmetic of who holds a level at a given time."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class Route:
    """One way to reach someone: a channel and its address."""

    channel: str  # webhook | email | log | apprise
    address: str


@dataclass(frozen=True)
class Member:
    """Someone who can be paged, and how: `address` first, then each fallback in order."""

    name: str
    channel: str  # webhook | email | log | apprise
    address: str
    fallbacks: tuple[Route, ...] = ()


@dataclass(frozen=True)
class Level:
    """One escalation level: members take turns of `shift_hours` from `rotation_start`."""

    members: tuple[Member, ...]
    rotation_start: datetime
    shift_hours: float


@dataclass(frozen=True)
class Shift:
    """Who holds a level, from when until when."""

    level: int  # 1-based
    member: Member
    started_at: datetime
    ends_at: datetime


def shift_at(level: Level, level_number: int, at: datetime) -> Shift:
    """The shift of a level that covers `at` (before `rotation_start` the rotation runs backwards)."""
    shift = timedelta(hours=level.shift_hours)
    index = math.floor((at - level.rotation_start) / shift)
    started_at = level.rotation_start + index * shift
    member = level.members[index % len(level.members)]
    return Shift(level=level_number, member=member, started_at=started_at,
                 ends_at=started_at + shift)


def on_call_now(levels: list[Level] | tuple[Level, ...], at: datetime) -> list[Shift]:
    """Who holds each level at `at`, level 1 first."""
    return [shift_at(level, i, at) for i, level in enumerate(levels, start=1)]


def next_attempt_delay_seconds(*, attempts: int, first_retry_seconds: float) -> float:
    """Exponential backoff: after the n-th failed attempt wait first_retry × 2^(n−1)."""
    return first_retry_seconds * 2 ** max(attempts - 1, 0)


def levels_from_json(levels: list[dict[str, Any]]) -> list[Level]:
    """Levels as stored (the PUT body's JSON) to rotation values."""
    return [
        Level(members=tuple(Member(name=m["name"], channel=m["channel"], address=m["address"],
                                   fallbacks=tuple(Route(channel=f["channel"], address=f["address"])
                                                   for f in m.get("fallbacks") or ()))
                            for m in lv["members"]),
              rotation_start=_parse_utc(lv["rotation_start"]),
              shift_hours=float(lv["shift_hours"]))
        for lv in levels
    ]


def _parse_utc(value: str | datetime) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.astimezone(UTC)
