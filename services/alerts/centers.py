"""The centre settings alerts applies (CONTRACT.md, Centre settings): its copy of scheduling's
`center.settings_changed`, and the thresholds of one centre, its own values over the system
defaults. Kept in memory per process; a change applies without a restart."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.alerts.models import CenterSettings
from services.alerts.settings import AlertsSettings
from shared.contracts.scheduling import CenterSettingsChangedData
from shared.db import UnitOfWork, insert_if_absent
from shared.table_cache import CentreValues, TableCache

# the centre settings alerts applies; the rest (time zone, refill thresholds) are scheduling's
APPLIED = ("flow_warning_pct", "flow_critical_pct", "escalation_delay_seconds",
           "ack_timeout_seconds")


def _load(session: Session) -> CentreValues:
    rows = session.scalars(select(CenterSettings))
    return CentreValues(own={r.center: {n: getattr(r, n) for n in APPLIED
                                        if getattr(r, n) is not None} for r in rows})


CACHE: TableCache[CentreValues] = TableCache(_load)


def on_settings_changed(uow: UnitOfWork, data: CenterSettingsChangedData) -> None:
    """Keep the centre's new values, unless a later version is already kept (a repeat or an
    event overtaken by a newer one changes nothing)."""
    insert_if_absent(uow.session, CenterSettings, {"center": data.center, "version": 0,
                                                   "updated_at": uow.now()})
    row = uow.session.get_one(CenterSettings, data.center, with_for_update=True,
                              populate_existing=True)
    if row.version >= data.version:
        return
    row.version, row.updated_at = data.version, uow.now()
    for name in APPLIED:
        setattr(row, name, getattr(data.values, name))
    uow.session.flush()
    CACHE.invalidate_after_commit(uow.session)


def effective_settings(uow: UnitOfWork, settings: AlertsSettings,
                       center: str | None) -> AlertsSettings:
    """Alerts' settings as they apply to one centre: its own values over the defaults."""
    return CACHE.get(uow.session, settings.center_settings_cache_seconds).over(settings, center)
