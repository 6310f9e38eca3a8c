"""The scheduled sweep: due-soon, overdue, near-empty, orders at lead time, late deliveries, then
the heartbeat. Each fact is announced once, also with several workers on one PostgreSQL database:
rows are claimed with a conditional UPDATE (… WHERE flag IS NULL, ids picked FOR UPDATE SKIP
LOCKED) that sets the flag and returns exactly the rows this worker announces."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, String, any_, func, literal_column, select, update
from sqlalchemy.orm import Session

from services.scheduling.appointments import appointment_data
from services.scheduling.centers import centers_with_own
from services.scheduling.deliveries import build_orders, delivery_payloads
from services.scheduling.flow import hours_until
from services.scheduling.models import Appointment, Delivery, SweepRun, Therapy, sql_values
from services.scheduling.settings import SchedulingSettings
from shared.clock import ensure_utc
from shared.contracts.scheduling import (
    DeliveryLateData,
    RefillDueSoonData,
    RefillOverdueData,
    ReservoirNearEmptyData,
    SweepCompletedData,
    SweepJob,
)
from shared.contracts.vocabulary import (
    OPEN_DELIVERY_STATUSES,
    AppointmentStatus,
    FillType,
    TherapyStatus,
)
from shared.db import UnitOfWork, is_postgres
from shared.runtime import Job, ServiceRuntime

log = structlog.get_logger(__name__)

BATCH = 1000
ACTOR = "scheduling-sweep"
# literals, not bound parameters, so that PostgreSQL's plans match the partial indexes
SCHEDULED: ColumnElement[str] = literal_column(sql_values(AppointmentStatus.SCHEDULED))
CHEMO: ColumnElement[str] = literal_column(sql_values(FillType.CHEMO))
OPEN_STATUSES: list[ColumnElement[str]] = [literal_column(sql_values(s)) for s in OPEN_DELIVERY_STATUSES]


def _claim(session: Session, model: Any, conditions: Sequence[ColumnElement[bool]],
           values: dict[str, Any]) -> list[Any]:
    """Set `values` on up to BATCH rows matching `conditions` and return them; rows another
    worker holds are skipped, and the conditions are checked again under the row lock."""
    ids = select(model.id).where(*conditions).limit(BATCH)
    if is_postgres(session):
        # `id = ANY(ARRAY(subquery))`: the ids are picked first (one InitPlan), then fetched by
        # primary key. With `id IN (subquery)` the planner hash-joins the subquery against a
        # scan of the whole table: a cost that grows with the table, not with the rows due
        picked = any_(func.array(ids.with_for_update(skip_locked=True).scalar_subquery()))
        stmt = update(model).where(model.id == picked, *conditions)
    else:
        stmt = update(model).where(model.id.in_(ids.scalar_subquery()), *conditions)
    stmt = stmt.values(**values).returning(model)
    return list(session.scalars(stmt, execution_options={"synchronize_session": False}))


def _drain(uow: UnitOfWork, claim: Callable[[], list[Any]],
           announce: Callable[[list[Any]], int]) -> int:
    total = 0
    while True:
        rows = claim()
        total += announce(rows) if rows else 0
        if len(rows) < BATCH:
            return total


def per_center(uow: UnitOfWork, settings: SchedulingSettings,
               conditions: Callable[[SchedulingSettings], list[ColumnElement[bool]]]
               ) -> list[list[ColumnElement[bool]]]:
    """A sweep's conditions once by the default settings (for every centre without its own
    values) and once for each centre that has its own (centre settings, no restart)."""
    own = centers_with_own(uow, settings)
    default = conditions(settings)
    if own:
        default.append(Appointment.center.not_in(list(own)))
    return [default, *([Appointment.center == c, *conditions(s)] for c, s in own.items())]


def announce_due_soon(uow: UnitOfWork, settings: SchedulingSettings) -> dict[str, Any]:
    """`refill.due_soon` once for each appointment due within its centre's notice period."""
    now = uow.now()
    n = 0
    for conditions in per_center(uow, settings, lambda s: [
            Appointment.status == SCHEDULED, Appointment.due_soon_announced_at.is_(None),
            Appointment.due_at <= now + timedelta(hours=s.due_soon_hours),
            Appointment.due_at > now]):
        n += _drain(uow, lambda c=conditions: _claim(uow.session, Appointment, c,  # type: ignore[misc]
                                                     {"due_soon_announced_at": now}),
                    lambda rows: uow.publish_many([(appointment_data(a, RefillDueSoonData),
                                                    a.pump_serial) for a in rows]))
    return {"announced": n}


def announce_overdue(uow: UnitOfWork, settings: SchedulingSettings) -> dict[str, Any]:
    """`refill.overdue` once for each scheduled appointment past its due time."""
    now = uow.now()
    conditions = [Appointment.status == SCHEDULED, Appointment.overdue_announced_at.is_(None),
                  Appointment.due_at <= now]

    def announce(rows: list[Appointment]) -> int:
        return uow.publish_many([(appointment_data(
            a, RefillOverdueData,
            overdue_hours=round((now - a.due_at).total_seconds() / 3600.0, 2),
            hours_to_empty=hours_until(now, a.projected_empty_at),
        ), a.pump_serial) for a in rows])

    n = _drain(uow, lambda: _claim(uow.session, Appointment, conditions,
                                   {"overdue_announced_at": now}), announce)
    return {"announced": n}


def announce_near_empty(uow: UnitOfWork, settings: SchedulingSettings) -> dict[str, Any]:
    """`reservoir.near_empty` once for each open appointment whose pump runs dry within its
    centre's horizon."""
    now = uow.now()

    def announce(rows: list[Appointment]) -> int:
        return uow.publish_many([(appointment_data(
            a, ReservoirNearEmptyData,
            hours_to_empty=hours_until(now, a.projected_empty_at) or 0.0,
        ), a.pump_serial) for a in rows])

    n = 0
    for conditions in per_center(uow, settings, lambda s: [
            Appointment.status == SCHEDULED, Appointment.near_empty_announced_at.is_(None),
            Appointment.projected_empty_at.is_not(None),
            Appointment.projected_empty_at <= now + timedelta(hours=s.near_empty_hours)]):
        n += _drain(uow, lambda c=conditions: _claim(uow.session, Appointment, c,  # type: ignore[misc]
                                                     {"near_empty_announced_at": now}), announce)
    return {"announced": n}


def place_due_orders(uow: UnitOfWork, settings: SchedulingSettings) -> dict[str, Any]:
    """An order for each chemo appointment of an active therapy within the pharmacy lead time."""
    now = uow.now()
    # a correlated scalar subquery, looked up by primary key for each candidate row: written as
    # EXISTS, PostgreSQL turned it into a hash join over every therapy (a scan of the whole
    # table in each claim, whatever the number due)
    active = (select(Therapy.status).where(Therapy.id == Appointment.therapy_id)
              .scalar_subquery() == literal_column(sql_values(TherapyStatus.ACTIVE)))
    conditions = [Appointment.status == SCHEDULED, Appointment.fill_type == CHEMO,
                  Appointment.delivery_id.is_(None),
                  Appointment.due_at <= now + timedelta(days=settings.pharmacy_lead_time_days),
                  active]
    new_order_id: Any = (func.gen_random_uuid().cast(String) if is_postgres(uow.session)
                         else func.lower(func.hex(func.randomblob(16))))
    failures = 0
    placed = 0
    seen_failures: set[str] = set()
    while True:
        rows = _claim(uow.session, Appointment, conditions, {"delivery_id": new_order_id})
        done, failed = build_orders(uow, rows, settings=settings, actor=ACTOR)
        placed += len(done)
        failures += len(failed)
        # released claims come back in the next batch: stop once only those are left
        fresh = {i for i, _ in failed} - seen_failures
        seen_failures |= fresh
        if len(rows) < BATCH or (not done and not fresh):
            break
    return {"placed": placed, "not_placed": failures}


def announce_late_deliveries(uow: UnitOfWork, settings: SchedulingSettings) -> dict[str, Any]:
    """`delivery.late` once for each open order not delivered by `needed_by` − the late margin."""
    now = uow.now()
    conditions = [Delivery.status.in_(OPEN_STATUSES), Delivery.late_announced_at.is_(None),
                  Delivery.needed_by <= now + timedelta(hours=settings.delivery_late_hours)]

    def announce(rows: list[Delivery]) -> int:
        return uow.publish_many([(data, data.id)
                                 for data in delivery_payloads(uow, rows, DeliveryLateData)])

    n = _drain(uow, lambda: _claim(uow.session, Delivery, conditions, {"late_announced_at": now}),
               announce)
    return {"announced": n}


SUB_JOBS: list[tuple[str, Callable[[UnitOfWork, SchedulingSettings], dict[str, Any]]]] = [
    ("due_soon", announce_due_soon),
    ("overdue", announce_overdue),
    ("near_empty", announce_near_empty),
    ("orders", place_due_orders),
    ("late_deliveries", announce_late_deliveries),
]


def sweep(runtime: ServiceRuntime) -> dict[str, Any]:
    """Run every sub-job in its own transaction (a failure is logged and retried next sweep), then
    record the sweep and publish the heartbeat `hai.scheduling.sweep.completed`."""
    started = runtime.clock.now()
    results: list[SweepJob] = []
    for name, job in SUB_JOBS:
        t0 = time.perf_counter()
        try:
            with runtime.uow_factory() as uow:
                facts = job(uow, runtime.settings)
                uow.commit()
            facts["seconds"] = round(time.perf_counter() - t0, 4)
            results.append(SweepJob(name=name, ok=True, facts=facts))
        except Exception as exc:  # noqa: BLE001 - one failing job must not stop the others
            log.exception("sweep.job_failed", job=name, error=type(exc).__name__)
            results.append(SweepJob(name=name, ok=False, facts={"error": type(exc).__name__}))
    finished = runtime.clock.now()
    with runtime.uow_factory() as uow:
        uow.session.add(SweepRun(started_at=started, finished_at=finished,
                                 ok=all(r.ok for r in results),
                                 jobs=[r.model_dump(mode="json") for r in results]))
        uow.publish(SweepCompletedData(at=finished, jobs=results))
        uow.commit()
    summary: dict[str, Any] = {"ok": all(r.ok for r in results)}
    for r in results:
        for key, value in r.facts.items():
            summary[f"{r.name}_{key}"] = value
    return summary


def sweep_job(settings: SchedulingSettings) -> Job:
    """The one periodic job of scheduling."""
    return Job(name="sweep", run=sweep, interval_seconds=settings.sweep_interval_seconds)


def scheduler_sweep(runtime: ServiceRuntime) -> str | None:
    """Readiness: a problem when no sweep finished for three intervals (once up that long)."""
    limit = timedelta(seconds=runtime.settings.sweep_interval_seconds
                      * runtime.settings.stale_after_intervals)
    now = runtime.clock.now()
    if now - runtime.started_at < limit:
        return None
    with runtime.uow_factory() as uow:
        last = uow.session.scalar(select(func.max(SweepRun.finished_at)))
    if last is None:
        return f"no sweep has run in {int(limit.total_seconds())} s"
    age = now - ensure_utc(last)
    if age > limit:
        return f"last sweep {int(age.total_seconds())} s ago"
    return None
