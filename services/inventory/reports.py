"""The registry's figures inventory owns (CONTRACT.md, Reports): pumps by status per centre (as
of now), explants by reason per centre and month; each centre's next to the consortium's.
A scoped caller sees its own centres' rows (and the stock's) beside the consortium's (`*`),
which always sums every centre."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select

from services.inventory.models import Pump
from shared.db import UnitOfWork
from shared.reports import CONSORTIUM, last_month, month_of, summed
from shared.scoping import unscoped

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


def _shown(uow: UnitOfWork, row_center: str, center: str | None) -> bool:
    """A centre's row is shown when asked for (every centre: `center` None) and the caller's
    token covers it; the stock's (no centre) is every centre's, as its pumps are."""
    return _visible(uow, row_center) and center in (None, row_center)


def _visible(uow: UnitOfWork, center: str | None) -> bool:
    """Every centre (None), the stock, or a centre the caller's token covers."""
    return center in (None, NO_CENTER) or uow.centers.covers(center)


def _consortium(uow: UnitOfWork, center: str | None, rows: list[dict[str, Any]],
                keys: list[str], counts: list[str]) -> list[dict[str, Any]]:
    """The consortium's rows (`*`, every centre's sum), but none beside a centre the token does
    not cover (whose rows are none: as an unknown centre's)."""
    if not _visible(uow, center):
        return []
    return [{**r, "center": CONSORTIUM} for r in summed(rows, keys, counts)]


def pumps_by_status(*, uow: UnitOfWork, center: str | None) -> PumpStatusReport:
    """How many pumps each centre has in each status, and the consortium's (`*`)."""
    stmt = select(Pump.center, Pump.status, func.count().label("pumps")).group_by(
        Pump.center, Pump.status)
    with unscoped(uow.session):  # the consortium's rows count every centre's pumps
        per_center = [{"center": r.center or NO_CENTER, "status": r.status, "pumps": r.pumps}
                      for r in uow.session.execute(stmt)]
    rows = sorted((r for r in per_center if _shown(uow, r["center"], center)),
                  key=lambda r: (r["center"], r["status"]))
    rows += _consortium(uow, center, per_center, ["status"], ["pumps"])
    return PumpStatusReport(center=center, rows=[PumpStatusRow(**r) for r in rows])


def explants_by_reason(*, uow: UnitOfWork, start: datetime, end: datetime,
                       center: str | None) -> ExplantReport:
    """Explants per centre, month (UTC) and reason as written, and the consortium's (`*`)."""
    month = month_of(uow.session, Pump.explanted_at).label("month")
    stmt = (select(Pump.center, month, Pump.explant_reason, func.count().label("explants"))
            .where(Pump.explanted_at.is_not(None), Pump.explanted_at >= start,
                   Pump.explanted_at < end)
            .group_by(Pump.center, month, Pump.explant_reason))
    with unscoped(uow.session):
        per_center = [{"center": r.center or NO_CENTER, "month": r.month,
                       "reason": r.explant_reason or UNSPECIFIED, "explants": r.explants}
                      for r in uow.session.execute(stmt)]
    rows = sorted((r for r in per_center if _shown(uow, r["center"], center)),
                  key=lambda r: (r["center"], r["month"], r["reason"]))
    rows += _consortium(uow, center, per_center, ["month", "reason"], ["explants"])
    return ExplantReport(from_month=start.strftime("%Y-%m"), to_month=last_month(end),
                         center=center, rows=[ExplantRow(**r) for r in rows])
