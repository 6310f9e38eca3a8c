"""Flow surveillance in scheduling's database (DOMAIN.md, Flow surveillance): each recorded reading
updates its pump's and its lot's running sums (a few statements, whatever the number of readings)
and tests its lot against the rest of the model (`hai.scheduling.lot.flow_drift` while it
drifts); the pump's trend after each reading (`hai.scheduling.flow.trend`); and the rebuild of
every sum from the refills, with a test of every lot (the scheduled job, and `hai` after a
restore). The arithmetic is services/scheduling/surveillance.py."""

from __future__ import annotations

import functools
from typing import Any

import structlog
from sqlalchemy import (
    BindParameter,
    Connection,
    Float,
    Select,
    Table,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from services.scheduling.models import FlowLotStats, FlowPumpStats, ImplantedPump, Refill
from services.scheduling.settings import SchedulingSettings
from services.scheduling.surveillance import (
    FlowTrend,
    GroupSums,
    LotDriftRule,
    LotVerdict,
    TrendRule,
    flow_trend,
    judge_lot,
    reading_delta,
)
from shared.contracts.scheduling import FlowTrendData, LotFlowDriftData
from shared.contracts.vocabulary import RefillStatus
from shared.db import UnitOfWork, is_postgres
from shared.dberrors import is_contention
from shared.runtime import Job, ServiceRuntime

log = structlog.get_logger(__name__)

# one rebuild at a time over every worker (PostgreSQL advisory lock key: "HAI lots")
REBUILD_LOCK_KEY = 0x4841494C4F5453


def lot_rule(settings: SchedulingSettings) -> LotDriftRule:
    """The lot test's settings (HAI_LOT_DRIFT_*)."""
    return LotDriftRule(min_pumps=settings.lot_drift_min_pumps,
                        min_rest_pumps=settings.lot_drift_min_rest_pumps,
                        min_readings_per_pump=settings.lot_drift_min_readings_per_pump,
                        alpha=settings.lot_drift_alpha,
                        min_difference_pct=settings.lot_drift_min_difference_pct)


def trend_rule(settings: SchedulingSettings) -> TrendRule:
    """The trend's settings (HAI_FLOW_TREND_*)."""
    return TrendRule(window=settings.flow_trend_window, min_readings=settings.flow_trend_min_readings,
                     alpha=settings.flow_trend_alpha)


# ---- one reading ---------------------------------------------------------------------------

def on_reading(uow: UnitOfWork, *, pump: ImplantedPump, deviation_pct: float,
               settings: SchedulingSettings, sign: int = 1) -> LotVerdict | None:
    """Add (sign +1) or withdraw (−1, a refill entered in error) one reading of `pump` to the
    running sums, test its lot, and announce the lot while it drifts. None for a pump of no lot.
    Two statements on PostgreSQL, whatever the number of readings: the pump's upsert, and the
    lot's upsert with the sums of the model's other lots (three on SQLite); a third only when
    the verdict changes (the lot's flag). Core statements on the session's connection: these
    tables span centres (no scoping to add) and the ORM's work per statement is the larger
    part of a reading's cost."""
    rule = lot_rule(settings)
    if sign > 0 and pump.lot_number is None:
        return None
    counted = _add_to_pump(uow, pump, sign * deviation_pct, sign)
    if counted is None:
        return None  # a reading withdrawn from a pump the sums never had
    model_code, lot_number, readings, total = counted
    # the pump's sums before this reading, then the change of its lot's sums
    delta = reading_delta(readings - sign, total - sign * deviation_pct, deviation_pct,
                          min_readings=rule.min_readings_per_pump, sign=sign)
    lot, was_drifting, model = _add_to_lot(uow, model_code, lot_number, delta)
    verdict = judge_lot(model_code, lot_number, lot, model, rule)
    if verdict.drifting != was_drifting:
        lots = cast_table(FlowLotStats)
        _connection(uow).execute(update(lots).where(
            lots.c.model_code == model_code, lots.c.lot_number == lot_number,
        ).values(drifting=verdict.drifting))
    if verdict.drifting:
        announce_drift(uow, verdict, rule)
    return verdict


def on_reading_unless_locked(uow: UnitOfWork, *, pump: ImplantedPump, deviation_pct: float,
                             settings: SchedulingSettings, sign: int = 1) -> LotVerdict | None:
    """`on_reading` in a savepoint: a refill is never refused because the rebuild holds the
    surveillance's rows (a lock timeout skips the update; the next rebuild counts the reading)."""
    try:
        with uow.session.begin_nested():
            return on_reading(uow, pump=pump, deviation_pct=deviation_pct, settings=settings,
                              sign=sign)
    except DBAPIError as exc:
        if not is_contention(exc):
            raise
        log.warning("surveillance.reading_skipped", pump_serial=pump.serial_number,
                    reason="surveillance rows locked (a rebuild under way)")
        return None


def _upsert(postgres: bool, table: Table) -> Any:
    """The dialect's INSERT (PostgreSQL or SQLite), for ON CONFLICT DO UPDATE."""
    return postgresql.insert(table) if postgres else sqlite.insert(table)


def _add_to_pump(uow: UnitOfWork, pump: ImplantedPump, deviation_pct: float,
                 sign: int) -> tuple[str, str, int, float] | None:
    """Add one reading to the pump's sums in one statement; its model, lot (the ones it was
    first counted under) and new sums. A withdrawal only updates an existing row."""
    table = cast_table(FlowPumpStats)
    if sign < 0:
        stmt: Any = update(table).where(table.c.serial_number == pump.serial_number)
        stmt = stmt.values(readings=table.c.readings - 1,
                           sum_deviation_pct=table.c.sum_deviation_pct + deviation_pct,
                           updated_at=uow.now())
        stmt = stmt.returning(table.c.model_code, table.c.lot_number, table.c.readings,
                              table.c.sum_deviation_pct)
        row = _connection(uow).execute(stmt).first()
    else:
        row = _connection(uow).execute(_pump_upsert(is_postgres(uow.session)), {
            "serial_number": pump.serial_number, "model_code": pump.model_code,
            "lot_number": pump.lot_number, "deviation_pct": deviation_pct,
            "now": uow.now()}).first()
    return None if row is None else (row[0], row[1], int(row[2]), float(row[3]))


def _param(table: Table, column: str, name: str | None = None) -> BindParameter[Any]:
    """A named parameter of `column`'s type (its type's conversions apply to the value)."""
    return bindparam(name or column, type_=table.c[column].type)


# a reading's statements are built once, their values parameters: built (and keyed for the
# statement cache) on every call they were half of the surveillance's cost per reading
@functools.cache
def _pump_upsert(postgres: bool) -> Any:
    """Add one reading to a pump's sums (its row made at its first), returning the new sums."""
    table = cast_table(FlowPumpStats)
    stmt = _upsert(postgres, table).values(
        serial_number=_param(table, "serial_number"), model_code=_param(table, "model_code"),
        lot_number=_param(table, "lot_number"), readings=1,
        sum_deviation_pct=_param(table, "sum_deviation_pct", "deviation_pct"),
        updated_at=_param(table, "updated_at", "now"))
    return stmt.on_conflict_do_update(
        index_elements=[table.c.serial_number],
        set_={"readings": table.c.readings + 1,
              "sum_deviation_pct": table.c.sum_deviation_pct + stmt.excluded.sum_deviation_pct,
              "updated_at": stmt.excluded.updated_at},
    ).returning(table.c.model_code, table.c.lot_number, table.c.readings,
                table.c.sum_deviation_pct)


def _connection(uow: UnitOfWork) -> Connection:
    """The unit of work's connection (in its transaction), for Core statements."""
    return uow.session.connection()


def _add_to_lot(uow: UnitOfWork, model_code: str, lot_number: str,
                delta: GroupSums) -> tuple[GroupSums, bool, GroupSums]:
    """Add `delta` to the lot's row (an upsert: two readings of one lot at once both count, one
    after the other); the row's new sums, its drifting flag and the model's new sums. On
    PostgreSQL one statement: the upsert in a CTE beside the sums of the model's other lots
    (which it does not change)."""
    params = {"model_code": model_code, "lot_number": lot_number, "pumps": delta.pumps,
              "sum_mean_pct": delta.sum_mean_pct, "sum_mean_sq": delta.sum_mean_sq,
              "readings": delta.readings, "now": uow.now()}
    if not is_postgres(uow.session):  # SQLite: no INSERT in a WITH
        row = _connection(uow).execute(_lot_upsert(False), params).one()
        lot = GroupSums(row[0], row[1], row[2], row[3])
        return lot, bool(row[4]), _model_sums(uow, model_code)
    row = _connection(uow).execute(_lot_upsert_beside_the_rest(), params).one()
    lot = GroupSums(row[0], row[1], row[2], row[3])
    return lot, bool(row[4]), lot + GroupSums(int(row[5]), float(row[6]), float(row[7]), int(row[8]))


@functools.cache
def _lot_upsert(postgres: bool) -> Any:
    """Add a change of sums to a lot's row (made at its first), returning the new sums and the
    lot's drifting flag."""
    table = cast_table(FlowLotStats)
    stmt = _upsert(postgres, table).values(
        model_code=_param(table, "model_code"), lot_number=_param(table, "lot_number"),
        pumps=_param(table, "pumps"), sum_mean_pct=_param(table, "sum_mean_pct"),
        sum_mean_sq=_param(table, "sum_mean_sq"), readings=_param(table, "readings"),
        drifting=False, updated_at=_param(table, "updated_at", "now"))
    return stmt.on_conflict_do_update(
        index_elements=[table.c.model_code, table.c.lot_number],
        set_={"pumps": table.c.pumps + stmt.excluded.pumps,
              "sum_mean_pct": table.c.sum_mean_pct + stmt.excluded.sum_mean_pct,
              "sum_mean_sq": table.c.sum_mean_sq + stmt.excluded.sum_mean_sq,
              "readings": table.c.readings + stmt.excluded.readings,
              "updated_at": stmt.excluded.updated_at},
    ).returning(table.c.pumps, table.c.sum_mean_pct, table.c.sum_mean_sq, table.c.readings,
                table.c.drifting)


@functools.cache
def _lot_upsert_beside_the_rest() -> Any:
    """PostgreSQL: the lot's upsert in a CTE, beside the sums of the model's other lots."""
    table = cast_table(FlowLotStats)
    new = _lot_upsert(True).cte("lot")
    rest = _sums_of_lots(table, table.c.model_code == _param(table, "model_code"),
                         table.c.lot_number != _param(table, "lot_number")).subquery("rest")
    # one row beside one row: joined on true, the lint of cartesian products satisfied
    return select(new, rest).select_from(new.join(rest, true()))


def _sums_of_lots(table: Table, *where: Any) -> Select[Any]:
    """Σ pumps, Σ mean, Σ mean², Σ readings over the lots' rows `where` says."""
    return select(func.coalesce(func.sum(table.c.pumps), 0),
                  func.coalesce(func.sum(table.c.sum_mean_pct), 0.0),
                  func.coalesce(func.sum(table.c.sum_mean_sq), 0.0),
                  func.coalesce(func.sum(table.c.readings), 0)).where(*where)


def cast_table(model: type[FlowLotStats] | type[FlowPumpStats]) -> Table:
    """The model's table (typed as a Table for the dialects' INSERT)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _model_sums(uow: UnitOfWork, model_code: str) -> GroupSums:
    """The sums over every lot of a model (one indexed aggregate over its lots' rows)."""
    table = cast_table(FlowLotStats)
    row = _connection(uow).execute(_sums_of_lots(table, table.c.model_code == model_code)).one()
    return GroupSums(int(row[0]), float(row[1]), float(row[2]), int(row[3]))


def announce_drift(uow: UnitOfWork, verdict: LotVerdict, rule: LotDriftRule) -> None:
    """`hai.scheduling.lot.flow_drift` with the evidence and the lot's pumps."""
    test = verdict.test
    assert test is not None
    serials = list(uow.session.scalars(select(FlowPumpStats.serial_number).where(
        FlowPumpStats.model_code == verdict.model_code,
        FlowPumpStats.lot_number == verdict.lot_number,
        FlowPumpStats.readings >= max(1, rule.min_readings_per_pump),
    ).order_by(FlowPumpStats.serial_number)))
    evidence: dict[str, Any] = verdict.evidence()
    uow.publish(LotFlowDriftData(
        **{k: v for k, v in evidence.items() if k in LotFlowDriftData.model_fields},
        pump_serials=serials, alpha=rule.alpha, min_difference_pct=rule.min_difference_pct,
        tested_at=uow.now(),
    ), subject=f"{verdict.model_code}/{verdict.lot_number}")


# ---- the pump's trend ------------------------------------------------------------------------

def pump_trend(uow: UnitOfWork, *, pump_serial: str, settings: SchedulingSettings) -> FlowTrend | None:
    """The trend of the pump's last recorded readings (None below the minimum)."""
    rule = trend_rule(settings)
    rows = uow.session.execute(
        select(Refill.performed_at, Refill.flow_deviation_pct).where(
            Refill.pump_serial == pump_serial, Refill.status == RefillStatus.RECORDED,
            Refill.flow_deviation_pct.is_not(None))
        .order_by(Refill.performed_at.desc(), Refill.id.desc()).limit(rule.window)).all()
    points = [(at, float(dev)) for at, dev in reversed(rows) if dev is not None]
    return flow_trend(points, band_pct=settings.flow_warning_pct, rule=rule)


def trend_event(uow: UnitOfWork, refill: Refill, settings: SchedulingSettings) -> FlowTrendData | None:
    """`hai.scheduling.flow.trend` after this refill's reading (None without a trend)."""
    trend = pump_trend(uow, pump_serial=refill.pump_serial, settings=settings)
    if trend is None:
        return None
    return FlowTrendData(pump_serial=refill.pump_serial, patient_mrn=refill.patient_mrn,
                         center=refill.center, refill_id=refill.id, **trend_figures(trend))


def trend_figures(trend: FlowTrend) -> dict[str, Any]:
    """A trend's figures as the event and the flow-readings answer carry them (rounded)."""
    return {"readings": trend.readings, "slope_pct_per_day": round(trend.slope_pct_per_day, 4),
            "slope_se_pct_per_day": round(trend.slope_se_pct_per_day, 4),
            "last_at": trend.last_at, "last_deviation_pct": trend.last_deviation_pct,
            "predicted_at": trend.predicted_at,
            "predicted_deviation_pct": round(trend.predicted_deviation_pct, 2),
            "prediction_se_pct": round(trend.prediction_se_pct, 2), "band_pct": trend.band_pct,
            "crossing": trend.crossing}


# ---- from scratch ----------------------------------------------------------------------------

def rebuild(uow: UnitOfWork, settings: SchedulingSettings) -> dict[str, Any]:
    """Recompute every pump's and lot's sums from the recorded readings (two INSERT … SELECT),
    test every lot, and announce the drifting ones. Skipped while another worker rebuilds."""
    session = uow.session
    if is_postgres(session) and not session.scalar(
            text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": REBUILD_LOCK_KEY}):
        return {"skipped": "another worker is rebuilding"}
    rule = lot_rule(settings)
    now = uow.now()
    session.execute(delete(FlowLotStats))
    session.execute(delete(FlowPumpStats))
    per_pump = (
        select(Refill.pump_serial, ImplantedPump.model_code, ImplantedPump.lot_number,
               func.count(), func.sum(Refill.flow_deviation_pct), literal(now, FlowPumpStats.updated_at.type))
        .join(ImplantedPump, ImplantedPump.serial_number == Refill.pump_serial)
        .where(Refill.status == RefillStatus.RECORDED, Refill.flow_deviation_pct.is_not(None),
               ImplantedPump.lot_number.is_not(None))
        .group_by(Refill.pump_serial, ImplantedPump.model_code, ImplantedPump.lot_number))
    session.execute(insert(FlowPumpStats).from_select(
        ["serial_number", "model_code", "lot_number", "readings", "sum_deviation_pct", "updated_at"],
        per_pump))
    counted = FlowPumpStats.readings >= max(1, rule.min_readings_per_pump)
    mean = FlowPumpStats.sum_deviation_pct / cast(FlowPumpStats.readings, Float)
    per_lot = (
        select(FlowPumpStats.model_code, FlowPumpStats.lot_number,
               func.count().filter(counted),
               func.coalesce(func.sum(case((counted, mean), else_=0.0)), 0.0),
               func.coalesce(func.sum(case((counted, mean * mean), else_=0.0)), 0.0),
               func.coalesce(func.sum(case((counted, FlowPumpStats.readings), else_=0)), 0),
               literal(False), literal(now, FlowLotStats.updated_at.type))
        .group_by(FlowPumpStats.model_code, FlowPumpStats.lot_number))
    session.execute(insert(FlowLotStats).from_select(
        ["model_code", "lot_number", "pumps", "sum_mean_pct", "sum_mean_sq", "readings", "drifting",
         "updated_at"], per_lot))
    verdicts = judge_every_lot(uow, rule)
    drifting = [v for v in verdicts if v.drifting]
    for v in drifting:
        session.execute(update(FlowLotStats).where(and_(
            FlowLotStats.model_code == v.model_code, FlowLotStats.lot_number == v.lot_number,
        )).values(drifting=True).execution_options(synchronize_session=False))
        announce_drift(uow, v, rule)
    return {"lots": len(verdicts), "drifting": len(drifting)}


def judge_every_lot(uow: UnitOfWork, rule: LotDriftRule) -> list[LotVerdict]:
    """Every lot's verdict from the lots' sums (one read of the lot table)."""
    lots = [(r.model_code, r.lot_number, GroupSums(r.pumps, r.sum_mean_pct, r.sum_mean_sq, r.readings))
            for r in uow.session.execute(select(
                FlowLotStats.model_code, FlowLotStats.lot_number, FlowLotStats.pumps,
                FlowLotStats.sum_mean_pct, FlowLotStats.sum_mean_sq, FlowLotStats.readings))]
    models: dict[str, GroupSums] = {}
    for model_code, _, sums in lots:
        models[model_code] = models.get(model_code, GroupSums()) + sums
    return [judge_lot(model_code, lot_number, sums, models[model_code], rule)
            for model_code, lot_number, sums in lots]


def run_rebuild(runtime: ServiceRuntime[SchedulingSettings]) -> dict[str, Any]:
    """The rebuild in its own transaction (the scheduled job)."""
    with runtime.uow_factory() as uow:
        facts = rebuild(uow, runtime.settings)
        uow.commit()
    return facts


def rebuild_job(settings: SchedulingSettings) -> Job:
    """The periodic rebuild (HAI_LOT_DRIFT_REBUILD_HOURS; the running sums need it only to heal)."""
    return Job(name="lot_surveillance_rebuild", run=run_rebuild,
               interval_seconds=settings.lot_drift_rebuild_hours * 3600.0)
