"""The registry's figures inventory owns (CONTRACT.md, Reports): pumps by status per centre (as
of now), explants by reason per centre and month; each centre's next to the consortium's."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import func, select

from services.inventory.models import Pump
from shared.db import UnitOfWork
from shared.reports import CONSORTIUM, last_month, month_of, summed

NO_CENTER = "(none)"  # pumps in stock, not yet given to a centre
UNSPECIFIED = "(unspecified)"


class PumpStatusRow(BaseModel):
    center: str
    status: str
    pumps: int


class PumpStatusReport(BaseModel):
    center: str | None
    rows: list[PumpStatusRow]


class ExplantRow(BaseModel):
    center: str
    month: str
    reason: str
    explants: int


class ExplantReport(BaseModel):
    from_month: str
    to_month: str
    center: str | None
    rows: list[ExplantRow]


def pumps_by_status(*, uow: UnitOfWork, center: str | None) -> PumpStatusReport:
    """How many pumps each centre has in each status, and the consortium's (`*`)."""
    stmt = select(Pump.center, Pump.status, func.count().label("pumps")).group_by(
        Pump.center, Pump.status)
    per_center = [{"center": r.center or NO_CENTER, "status": r.status, "pumps": r.pumps}
                  for r in uow.session.execute(stmt)]
    rows = sorted((r for r in per_center if center is None or r["center"] == center),
                  key=lambda r: (r["center"], r["status"]))
    rows += [{**r, "center": CONSORTIUM} for r in summed(per_center, ["status"], ["pumps"])]
    return PumpStatusReport(center=center, rows=[PumpStatusRow(**r) for r in rows])


def explants_by_reason(*, uow: UnitOfWork, start: datetime, end: datetime,
                       center: str | None) -> ExplantReport:
    """Explants per centre, month (UTC) and reason as written, and the consortium's (`*`)."""
    month = month_of(uow.session, Pump.explanted_at).label("month")
    stmt = (select(Pump.center, month, Pump.explant_reason, func.count().label("explants"))
            .where(Pump.explanted_at.is_not(None), Pump.explanted_at >= start,
                   Pump.explanted_at < end)
            .group_by(Pump.center, month, Pump.explant_reason))
    per_center = [{"center": r.center or NO_CENTER, "month": r.month,
                   "reason": r.explant_reason or UNSPECIFIED, "explants": r.explants}
                  for r in uow.session.execute(stmt)]
    rows = sorted((r for r in per_center if center is None or r["center"] == center),
                  key=lambda r: (r["center"], r["month"], r["reason"]))
    rows += [{**r, "center": CONSORTIUM}
             for r in summed(per_center, ["month", "reason"], ["explants"])]
    return ExplantReport(from_month=start.strftime("%Y-%m"), to_month=last_month(end),
                         center=center, rows=[ExplantRow(**r) for r in rows])
