"""The registry's statistics and CSV, checked against numbers computed by hand."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from shared.errors import Invalid
from shared.reports import csv_cell, last_month, percentile, period, share, summed, to_csv

NOW = datetime(2026, 11, 2, 8, tzinfo=UTC)


def test_percentile_interpolates_between_ranks_as_percentile_cont_does() -> None:
    hours = [10.0, 2.0, 4.0, 8.0, 6.0]  # sorted 2 4 6 8 10
    assert percentile(hours, 0.5) == 6.0
    # p90: rank 0.9 × 4 = 3.6 → 8 + 0.6 × (10 − 8) = 9.2
    assert percentile(hours, 0.9) == pytest.approx(9.2)
    # an even count: the median halfway between 4 and 6
    assert percentile([2.0, 4.0, 6.0, 8.0], 0.5) == 5.0
    # p90 of 1..10: rank 8.1 → 9 + 0.1 × 1 = 9.1
    assert percentile([float(x) for x in range(1, 11)], 0.9) == pytest.approx(9.1)
    assert percentile([3.5], 0.9) == 3.5
    assert percentile([], 0.5) is None
    assert percentile([1.0, 2.0], 0.0) == 1.0 and percentile([1.0, 2.0], 1.0) == 2.0
    with pytest.raises(ValueError):
        percentile([1.0], 1.5)


def test_share_rounds_and_never_divides_by_zero() -> None:
    assert share(2, 3) == 0.6667
    assert share(0, 5) == 0.0
    assert share(0, 0) is None


def test_the_consortium_sums_the_centres_counts_per_month() -> None:
    rows = [{"center": "A", "month": "2026-10", "n": 3, "late": 1},
            {"center": "B", "month": "2026-10", "n": 4, "late": None},
            {"center": "A", "month": "2026-11", "n": 5, "late": 2}]
    assert summed(rows, ["month"], ["n", "late"]) == [
        {"month": "2026-10", "n": 7, "late": 1}, {"month": "2026-11", "n": 5, "late": 2}]


def test_a_period_is_whole_utc_months_and_defaults_to_the_last_twelve() -> None:
    assert period("2026-01", "2026-03", now=NOW) == (
        datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    assert period(None, None, now=NOW) == (
        datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    assert period("2026-12", "2026-12", now=NOW)[1] == datetime(2027, 1, 1, tzinfo=UTC)
    assert last_month(datetime(2027, 1, 1, tzinfo=UTC)) == "2026-12"
    with pytest.raises(Invalid):
        period("2026-05", "2026-04", now=NOW)
    with pytest.raises(Invalid):
        period("2020-01", "2026-04", now=NOW)  # more than 60 months
    with pytest.raises(Invalid):
        period("2026-13", None, now=NOW)
    for no_date in ("0000-01", "0006-01"):  # schemathesis's: year 0 was a 500
        with pytest.raises(Invalid):
            period(no_date, None, now=NOW)


@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)",
                                  "\tcmd", "\r=1"])
def test_text_that_starts_like_a_formula_is_defused(text: str) -> None:
    assert csv_cell(text) == "'" + text


def test_numbers_stay_numbers_and_nothing_is_empty() -> None:
    assert csv_cell(-2.5) == "-2.5" and csv_cell(3) == "3" and csv_cell(None) == ""
    assert csv_cell(True) == "true" and csv_cell("Centre A") == "Centre A"


def test_csv_quotes_commas_quotes_and_line_breaks() -> None:
    rows = [{"center": 'Saint-Louis, "Paris"', "n": 1}, {"center": "two\nlines", "n": None}]
    body = to_csv(rows, ["center", "n"])
    assert body.startswith("center,n\r\n")
    assert list(csv.reader(io.StringIO(body))) == [
        ["center", "n"], ['Saint-Louis, "Paris"', "1"], ["two\nlines", ""]]
