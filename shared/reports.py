"""The registry's reports (CONTRACT.md, Reports): the period asked for, the statistics (pure
functions, checked by hand in tests/unit/platform/test_reports.py), the SQL pieces both
dialects need, and the answer as JSON or CSV (`Accept: text/csv` or `?format=csv`).

Months are UTC calendar months, written `YYYY-MM`.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import ColumnElement, func
from sqlalchemy.orm import Session

from shared.db import is_postgres
from shared.errors import Invalid

# years 1000-2999: a year 0 is no date at all, and nothing is recorded before or after those
MONTH = re.compile(r"^([12]\d{3})-(0[1-9]|1[0-2])$")
MAX_MONTHS = 60
CONSORTIUM = "*"  # the `center` of the rows summing every centre
Format = Literal["json", "csv"]
FromParam = Annotated[str | None, Query(alias="from", pattern=MONTH.pattern, examples=["2026-01"],
                                        description="first month (YYYY-MM, UTC); default: "
                                                    "11 months before `to`")]
ToParam = Annotated[str | None, Query(alias="to", pattern=MONTH.pattern, examples=["2026-12"],
                                      description="last month, included; default: this month")]
FormatParam = Annotated[Format | None, Query(description="`csv`, or send `Accept: text/csv`")]


# ---- the period ----------------------------------------------------------------------------

def month_start(month: str) -> datetime:
    """The first instant (UTC) of a `YYYY-MM` month."""
    m = MONTH.match(month)
    if m is None:
        raise Invalid("month", "must be a month written YYYY-MM")
    return datetime(int(m[1]), int(m[2]), 1, tzinfo=UTC)


def next_month(start: datetime) -> datetime:
    """The first instant of the month after the one `start` opens."""
    return start.replace(year=start.year + 1, month=1) if start.month == 12 \
        else start.replace(month=start.month + 1)


def last_month(end: datetime) -> str:
    """`YYYY-MM` of the last month of a period ending (excluded) at `end`."""
    first = end.replace(day=1)
    last = first.replace(year=first.year - 1, month=12) if first.month == 1 \
        else first.replace(month=first.month - 1)
    return last.strftime("%Y-%m")


def period(from_month: str | None, to_month: str | None, *, now: datetime,
           default_months: int = 12) -> tuple[datetime, datetime]:
    """[start, end) of the months `from`..`to` (inclusive); by default the last
    `default_months` months up to the current one. A 422 when reversed or too long."""
    last = month_start(to_month) if to_month else now.astimezone(UTC).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0)
    if from_month:
        first = month_start(from_month)
    else:
        first = last
        for _ in range(default_months - 1):
            first = first.replace(year=first.year - 1, month=12) if first.month == 1 \
                else first.replace(month=first.month - 1)
    if first > last:
        raise Invalid("from", "must not be after `to`")
    if (last.year - first.year) * 12 + last.month - first.month >= MAX_MONTHS:
        raise Invalid("from", f"a report covers at most {MAX_MONTHS} months")
    return first, next_month(last)


# ---- statistics (pure) ---------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0 ≤ q ≤ 1) by linear interpolation between the closest ranks, as
    PostgreSQL's `percentile_cont` computes it; None for no values."""
    if not 0.0 <= q <= 1.0:
        raise ValueError("q must lie in [0, 1]")
    if not values:
        return None
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def share(part: int, whole: int) -> float | None:
    """part / whole, rounded to 4 places; None when there is nothing to divide."""
    return None if whole == 0 else round(part / whole, 4)


def summed(rows: Iterable[Mapping[str, Any]], keys: Sequence[str],
           counts: Sequence[str]) -> list[dict[str, Any]]:
    """The rows added up over everything but `keys` (the consortium's counts from the centres')."""
    totals: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[k] for k in keys)
        total = totals.setdefault(key, {**{k: row[k] for k in keys}, **dict.fromkeys(counts, 0)})
        for c in counts:
            total[c] += row[c] or 0
    return [totals[k] for k in sorted(totals, key=lambda k: tuple(str(x) for x in k))]


# ---- SQL of both dialects ------------------------------------------------------------------

def month_of(session: Session, column: Any) -> ColumnElement[str]:
    """`YYYY-MM` of a timestamp column, in UTC."""
    if is_postgres(session):
        return func.to_char(func.timezone("UTC", column), "YYYY-MM")
    return func.strftime("%Y-%m", column)


def hours_between(session: Session, later: Any, earlier: Any) -> ColumnElement[Any]:
    """`later − earlier` in hours."""
    if is_postgres(session):
        return func.extract("epoch", later - earlier) / 3600.0
    return (func.julianday(later) - func.julianday(earlier)) * 24.0


# ---- the answer ----------------------------------------------------------------------------

R = TypeVar("R", bound=BaseModel)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """A value as a CSV cell a spreadsheet will not run: text that starts like a formula is
    prefixed with `'` (OWASP, CSV injection); numbers stay numbers."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def to_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """The rows as CSV (RFC 4180 quoting, CRLF line ends), one header line of `columns`."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(row.get(c)) for c in columns])
    return out.getvalue()


def wants_csv(request: Request, fmt: Format | None) -> bool:
    """`?format=csv`, or `Accept: text/csv` without `?format=json`."""
    if fmt is not None:
        return fmt == "csv"
    return "text/csv" in request.headers.get("accept", "")


def answer(request: Request, fmt: Format | None, report: R, *, rows: str,
           columns: Sequence[str], filename: str) -> Response | R:
    """The report as JSON, or its `rows` list as a CSV download."""
    if not wants_csv(request, fmt):
        return report
    body = to_csv((r.model_dump(mode="json") for r in getattr(report, rows)), columns)
    return Response(body, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'})
