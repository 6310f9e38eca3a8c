"""The centre's local time: shown, typed, and the clock changes (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.dashboard.localtime import (
    fmt_clock,
    fmt_local,
    input_value,
    localize_text,
    parse_local,
    utc_offset,
    zone_for,
)
from services.dashboard.settings import DashboardSettings

NY = ZoneInfo("America/New_York")
KATHMANDU = ZoneInfo("Asia/Kathmandu")


def test_shown_in_the_centres_zone_with_the_offset_where_it_matters() -> None:
    winter = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 1, 14, 0, tzinfo=UTC)
    assert fmt_local(winter, NY) == "2026-11-26 09:00 EST"
    assert fmt_local(summer, NY, offset=True) == "2026-07-01 10:00 EDT (UTC−04:00)"
    assert fmt_local(winter, ZoneInfo("UTC"), offset=True) == "2026-11-26 14:00 UTC"
    assert fmt_local(winter, KATHMANDU) == "2026-11-26 19:45 UTC+05:45"  # a zone without letters
    assert fmt_local(None, NY) == "—"
    assert fmt_clock(winter, NY) == "09:00 EST"
    assert utc_offset(winter.astimezone(ZoneInfo("Asia/Kolkata"))) == "UTC+05:30"


def test_typed_local_time_becomes_utc() -> None:
    assert parse_local("2026-11-26T09:00", NY).utc == datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
    assert parse_local("2026-07-01T10:00", NY).utc == datetime(2026, 7, 1, 14, 0, tzinfo=UTC)
    assert parse_local("2026-11-26T09:00", ZoneInfo("UTC")).utc == datetime(2026, 11, 26, 9, 0,
                                                                            tzinfo=UTC)
    assert input_value(datetime(2026, 11, 26, 14, 0, tzinfo=UTC), NY) == "2026-11-26T09:00"


def test_a_time_the_clocks_skip_is_refused_in_plain_words() -> None:
    # 2026-03-08 02:00 EST → 03:00 EDT in New York: 02:30 never happens
    typed = parse_local("2026-03-08T02:30", NY)
    assert typed.utc is None and typed.error is not None
    assert "does not exist" in typed.error and "America/New_York" in typed.error
    # a minute either side of the gap is fine
    assert parse_local("2026-03-08T01:59", NY).utc == datetime(2026, 3, 8, 6, 59, tzinfo=UTC)
    assert parse_local("2026-03-08T03:00", NY).utc == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)


def test_a_time_the_clocks_pass_twice_is_the_first_one() -> None:
    # 2026-11-01 02:00 EDT → 01:00 EST: 01:30 happens twice; the first is 05:30 UTC
    assert parse_local("2026-11-01T01:30", NY).utc == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    assert parse_local("2026-11-01T02:00", NY).utc == datetime(2026, 11, 1, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "  ", "yesterday", "2026-13-01T09:00", "2026-11-26T25:00",
                                  "\x00"])
def test_what_is_not_a_time_is_refused(text: str) -> None:
    typed = parse_local(text, NY)
    assert typed.utc is None and typed.error


def test_an_explicit_offset_is_taken_as_typed() -> None:
    assert parse_local("2026-11-26T09:00+01:00", NY).utc == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1),
                    timezones=st.just(UTC)))
def test_shown_then_typed_back_is_the_same_minute(when: datetime) -> None:
    when = when.replace(second=0, microsecond=0)
    local = when.astimezone(NY)
    typed = parse_local(input_value(when, NY), NY).utc
    if local.fold == 1:  # the second pass of a repeated hour reads back as the first
        assert typed is not None and (when - typed).total_seconds() == 3600
    else:
        assert typed == when


def test_iso_timestamps_in_a_sentence_become_local() -> None:
    text = "saline refill of pump SN1 due 2026-11-26T14:00:00+00:00 (last 2026-11-20T14:00:00Z)"
    assert localize_text(text, NY) == ("saline refill of pump SN1 due 2026-11-26 09:00 EST "
                                       "(last 2026-11-20 09:00 EST)")
    assert localize_text("no time here; 2026-11-26 is a date", NY) == "no time here; 2026-11-26 is a date"


def test_the_zone_is_a_setting_checked_at_start() -> None:
    settings = DashboardSettings(time_zone="America/New_York")
    assert zone_for(settings) == NY and zone_for(settings, "ANY-CENTRE") == NY
    assert zone_for(DashboardSettings()) == ZoneInfo("UTC")
    for bad in ("Mars/Olympus", "../etc/passwd", "", "EST5EDT\x00"):
        with pytest.raises(ValueError, match="IANA"):
            DashboardSettings(time_zone=bad)
