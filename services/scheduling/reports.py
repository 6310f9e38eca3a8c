"""The registry's figures scheduling owns (CONTRACT.md, Reports): per centre and per month, the
refills done, the share on time (inside the window), the hours overdue (median, p90), the share
of abnormal readings (by each centre's own warning band) and the deliveries late; every
centre's next to the consortium's. Plain SQL aggregates; percentiles by PostgreSQL's
`percentile_cont`, or in Python on SQLite (the same interpolation)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Float,
    and_,
    case,
    cast,
    delete,
    func,
    literal,
    literal_column,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite

from services.scheduling.models import (
    REPORT_MONTH_SQL,
    CenterSettings,
    Delivery,
    Refill,
    ReportSnapshot,
)
from services.scheduling.settings import SchedulingSettings
from shared.contracts.vocabulary import DeliveryStatus, RefillStatus
from shared.db import UnitOfWork, is_postgres
from shared.reports import (
    CONSORTIUM,
    hours_between,
    last_month,
    month_of,
    percentile,
    period,
    share,
    summed,
)
from shared.runtime import Job, ServiceRuntime
from shared.scoping import unscoped

COUNTS = ("refills_done", "on_time", "overdue_refills", "readings", "abnormal_readings",
          "deliveries", "deliveries_late")


class RefillReportRow(BaseModel):
    """One centre's month (or the consortium's, `center` `*`)."""

    center: str
    month: str  # YYYY-MM, UTC
    refills_done: int
    on_time: int  # inside the refill window
    on_time_share: float | None
    overdue_refills: int  # done after their appointment's due time
    overdue_hours_median: float | None  # of the overdue refills
    overdue_hours_p90: float | None
    readings: int  # refills with a measured flow
    abnormal_readings: int  # |deviation| above the centre's warning band
    abnormal_share: float | None
    deliveries: int  # drug delivery orders needed that month, cancelled ones left out
    deliveries_late: int  # announced late (not delivered by needed-by − HAI_DELIVERY_LATE_HOURS)


class RefillReport(BaseModel):
    from_month: str
    to_month: str
    center: str | None  # the centre asked for (its rows and the consortium's), or every centre
    computed_at: datetime  # when these figures were computed (HAI_REPORT_MAX_AGE_SECONDS)
    rows: list[RefillReportRow]


COLUMNS = tuple(RefillReportRow.model_fields)
Overdue = tuple[int, float | None, float | None]
NO_HOURS: Overdue = (0, None, None)


def refill_report(*, uow: UnitOfWork, start: datetime, end: datetime, center: str | None,
                  settings: SchedulingSettings) -> RefillReport:
    """The refill registry of [start, end): each centre's months (or one centre's), then the
    consortium's; from the period's snapshot while it is younger than
    `HAI_REPORT_MAX_AGE_SECONDS`, else computed now (and kept). The rows are the caller's
    centres' and the consortium's (`*`, every centre's sum, whoever asks); none for a `center`
    the token does not cover."""
    key = f"refills:{start:%Y-%m}:{last_month(end)}"
    now = uow.now()
    snapshot = uow.session.get(ReportSnapshot, key)
    if snapshot is not None and (now - snapshot.computed_at).total_seconds() \
            < settings.report_max_age_seconds:
        report = RefillReport.model_validate(snapshot.body)
    else:  # the consortium's figures, whoever asks: the snapshot serves every caller
        with unscoped(uow.session):
            report = compute_refill_report(uow=uow, start=start, end=end, settings=settings)
        keep_snapshot(uow, key, report)
    if center is not None and not uow.centers.covers(center):
        return report.model_copy(update={"center": center, "rows": []})  # as an unknown centre
    return report.model_copy(update={"center": center, "rows": [
        r for r in report.rows if r.center == CONSORTIUM
        or (uow.centers.covers(r.center) and center in (None, r.center))]})


def keep_snapshot(uow: UnitOfWork, key: str, report: RefillReport) -> None:
    """Keep a computed report as its period's snapshot (the last writer wins)."""
    values = {"key": key, "computed_at": report.computed_at, "body": report.model_dump(mode="json")}
    stmt = (postgresql.insert(ReportSnapshot) if is_postgres(uow.session)
            else sqlite.insert(ReportSnapshot)).values(**values)
    uow.session.execute(stmt.on_conflict_do_update(
        index_elements=["key"], set_={"computed_at": stmt.excluded.computed_at,
                                      "body": stmt.excluded.body}))


def forget_snapshots(uow: UnitOfWork) -> None:
    """Drop every snapshot (a centre's band changed: its abnormal readings must be counted again)."""
    uow.session.execute(delete(ReportSnapshot))


def compute_refill_report(*, uow: UnitOfWork, start: datetime, end: datetime,
                          settings: SchedulingSettings) -> RefillReport:
    """Every centre's months of [start, end), then the consortium's, from the tables now."""
    if is_postgres(uow.session):
        counts, hours = _refill_figures_pg(uow, start, end, settings)
    else:
        counts, hours = _refill_counts(uow, start, end, settings), _overdue_hours(uow, start, end)
    for key, value in _delivery_counts(uow, start, end).items():
        counts.setdefault(key, {"center": key[0], "month": key[1]}).update(value)
    per_center = [{**dict.fromkeys(COUNTS, 0), **c} for c in counts.values()]
    consortium = [{**row, "center": CONSORTIUM} for row in summed(per_center, ["month"], COUNTS)]
    rows = [_row(r, hours.get((r["center"], r["month"]), NO_HOURS))
            for r in sorted(per_center, key=lambda r: (r["center"], r["month"]))]
    rows += [_row(r, hours.get((CONSORTIUM, r["month"]), NO_HOURS)) for r in consortium]
    return RefillReport(from_month=start.strftime("%Y-%m"), to_month=last_month(end),
                        center=None, computed_at=uow.now(), rows=rows)


def _refill_figures_pg(uow: UnitOfWork, start: datetime, end: datetime, settings: SchedulingSettings,
                       ) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[tuple[str, str], Overdue]]:
    """Every refill figure of every (centre, month) and the consortium's hours overdue, in one
    pass over ix_refills_month_center (already in month and centre order: no sort, no join;
    the hours overdue from the due time each refill recorded)."""
    session = uow.session
    # for the rest of the transaction: no JIT (compiling costs more than it saves here), and
    # the consortium's month of hours sorted in memory (4 MB, the default, spills to disk)
    session.execute(text("SET LOCAL jit = off"))
    session.execute(text("SET LOCAL work_mem = '32MB'"))
    month: ColumnElement[datetime] = literal_column(
        REPORT_MONTH_SQL.replace("performed_at", "refills.performed_at"))
    bands = {c: float(b) for c, b in session.execute(
        select(CenterSettings.center, CenterSettings.flow_warning_pct)
        .where(CenterSettings.flow_warning_pct.is_not(None))) if b is not None}
    default = literal(settings.flow_warning_pct, Float)
    deviation = func.abs(Refill.flow_deviation_pct)
    # each centre's own band; the cheap test first (most readings are inside every band)
    abnormal = deviation > (case(bands, value=Refill.center, else_=default) if bands else default)
    if bands:
        abnormal = and_(deviation > min(settings.flow_warning_pct, *bands.values()), abnormal)
    overdue = Refill.performed_at > Refill.appointment_due_at
    hours = func.date_part("epoch", Refill.performed_at - Refill.appointment_due_at) / 3600.0
    stmt = (select(month.label("month"), Refill.center,
                   func.count().label("refills_done"),
                   func.count().filter(Refill.outside_window.is_(False)).label("on_time"),
                   func.count(Refill.flow_deviation_pct).label("readings"),
                   func.count().filter(abnormal).label("abnormal_readings"),
                   func.count().filter(overdue).label("overdue"),
                   func.percentile_cont(literal([0.5, 0.9], ARRAY(Float)))
                   .within_group(hours).filter(overdue).label("hours"))
            .where(Refill.status == RefillStatus.RECORDED,
                   month >= _utc_wall(start), month < _utc_wall(end))
            .group_by(func.rollup(month, Refill.center)))
    counts: dict[tuple[str, str], dict[str, Any]] = {}
    overdue_hours: dict[tuple[str, str], Overdue] = {}
    for r in session.execute(stmt):
        if r.month is None:
            continue  # the rollup's grand total
        key = (r.center or CONSORTIUM, f"{r.month:%Y-%m}")
        median, p90 = r.hours or (None, None)
        overdue_hours[key] = (r.overdue, median, p90)
        if r.center is not None:
            counts[key] = {"center": r.center, "month": key[1], "refills_done": r.refills_done,
                           "on_time": r.on_time, "readings": r.readings,
                           "abnormal_readings": r.abnormal_readings}
    return counts, overdue_hours


def _utc_wall(at: datetime) -> datetime:
    """`at` as a UTC wall time (the index's months are timestamps without a zone)."""
    return at.astimezone(UTC).replace(tzinfo=None)


def refresh_default_report(uow: UnitOfWork, settings: SchedulingSettings) -> dict[str, Any]:
    """The worker's job: compute the default period's report again and keep it."""
    start, end = period(None, None, now=uow.now())
    report = compute_refill_report(uow=uow, start=start, end=end, settings=settings)
    keep_snapshot(uow, f"refills:{start:%Y-%m}:{last_month(end)}", report)
    return {"rows": len(report.rows)}


def _row(counts: dict[str, Any], hours: Overdue) -> RefillReportRow:
    n, median, p90 = hours
    return RefillReportRow(
        **{**counts, "overdue_refills": n},
        on_time_share=share(counts["on_time"], counts["refills_done"]),
        abnormal_share=share(counts["abnormal_readings"], counts["readings"]),
        overdue_hours_median=None if median is None else round(median, 2),
        overdue_hours_p90=None if p90 is None else round(p90, 2))


def _refill_counts(uow: UnitOfWork, start: datetime, end: datetime,
                   settings: SchedulingSettings) -> dict[tuple[str, str], dict[str, Any]]:
    session = uow.session
    month = month_of(session, Refill.performed_at).label("month")
    band = func.coalesce(CenterSettings.flow_warning_pct, literal(settings.flow_warning_pct, Float))
    measured = Refill.flow_deviation_pct.is_not(None)
    stmt = (select(Refill.center, month,
                   func.count().label("refills_done"),
                   func.sum(case((Refill.outside_window, 0), else_=1)).label("on_time"),
                   func.sum(case((measured, 1), else_=0)).label("readings"),
                   func.sum(case((and_(measured, func.abs(Refill.flow_deviation_pct) > band), 1),
                                 else_=0)).label("abnormal_readings"))
            .outerjoin(CenterSettings, CenterSettings.center == Refill.center)
            .where(Refill.status == RefillStatus.RECORDED, Refill.performed_at >= start,
                   Refill.performed_at < end)
            .group_by(Refill.center, month))
    return {(r.center, r.month): dict(r._mapping) for r in session.execute(stmt)}


def _delivery_counts(uow: UnitOfWork, start: datetime,
                     end: datetime) -> dict[tuple[str, str], dict[str, int]]:
    month = month_of(uow.session, Delivery.needed_by).label("month")
    stmt = (select(Delivery.center, month, func.count().label("deliveries"),
                   func.sum(case((Delivery.late_announced_at.is_not(None), 1), else_=0))
                   .label("deliveries_late"))
            .where(Delivery.status != DeliveryStatus.CANCELLED, Delivery.needed_by >= start,
                   Delivery.needed_by < end)
            .group_by(Delivery.center, month))
    return {(r.center, r.month): {"deliveries": r.deliveries, "deliveries_late": r.deliveries_late}
            for r in uow.session.execute(stmt)}


def _overdue_hours(uow: UnitOfWork, start: datetime,
                   end: datetime) -> dict[tuple[str, str], Overdue]:
    """(how many, median, p90) of the refills done after their due time, and their hours
    overdue, per (centre, month) and per (`*`, month)."""
    session = uow.session
    month = month_of(session, Refill.performed_at).label("month")
    # the appointment's due time as the refill recorded it: one scan of the refills, no join
    hours = hours_between(session, Refill.performed_at, Refill.appointment_due_at)
    base = (select(Refill.center, month)
            .where(Refill.status == RefillStatus.RECORDED, Refill.performed_at >= start,
                   Refill.performed_at < end, Refill.performed_at > Refill.appointment_due_at))
    if is_postgres(session):
        stmt = (base.add_columns(
                    func.count().label("n"),
                    func.percentile_cont(0.5).within_group(hours).label("median"),
                    func.percentile_cont(0.9).within_group(hours).label("p90"))
                .group_by(func.grouping_sets(tuple_(Refill.center, month), tuple_(month))))
        return {(r.center or CONSORTIUM, r.month): (r.n, r.median, r.p90)
                for r in session.execute(stmt)}
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in session.execute(base.add_columns(cast(hours, Float).label("hours"))):
        values[(r.center, r.month)].append(r.hours)
        values[(CONSORTIUM, r.month)].append(r.hours)
    return {k: (len(v), percentile(v, 0.5), percentile(v, 0.9)) for k, v in values.items()}


def report_job(settings: SchedulingSettings) -> Job:
    """The worker keeps the default period's report fresh: computed again every half of
    `HAI_REPORT_MAX_AGE_SECONDS`, so that no one waits for it."""

    def run(runtime: ServiceRuntime) -> dict[str, Any]:
        with runtime.uow_factory() as uow:
            facts = refresh_default_report(uow, runtime.settings)
            uow.commit()
        return facts

    return Job(name="registry", run=run, interval_seconds=settings.report_max_age_seconds / 2)
