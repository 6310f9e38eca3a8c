"""Per-centre settings (CONTRACT.md, Centre settings): a centre's own time zone and thresholds,
each falling back to the system default (DOMAIN.md), audited and announced when an admin
changes them; `effective_settings(uow, settings, center)` is what every judgement reads.

The table is small (one row per centre): each process keeps it in memory, reloaded when the
replica that took a change commits it, and on every replica at most
`HAI_CENTER_SETTINGS_CACHE_SECONDS` after it. No restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.scheduling.models import CenterSettings
from services.scheduling.reports import forget_snapshots
from services.scheduling.schemas import (
    CenterSettingRead,
    CenterSettingsRead,
    CenterSettingsUpdate,
)
from services.scheduling.settings import SchedulingSettings
from shared.audit import AuditEntry
from shared.contracts.scheduling import CenterSettingsChangedData, CenterSettingsValues
from shared.contracts.vocabulary import SettingSource
from shared.db import UnitOfWork, insert_if_absent
from shared.errors import Invalid
from shared.pagination import Page, PageParams, paginate
from shared.table_cache import CentreValues, TableCache

ENTITY = "center_settings"
CHANGED = "center_settings.changed"


@dataclass(frozen=True)
class Default:
    """Where a setting's system default comes from: its variable and its source (DOMAIN.md)."""

    setting: str
    source: str


# every field a centre may set, with the system default it falls back to
DEFAULTS: dict[str, Default] = {
    "time_zone": Default("HAI_TIME_ZONE", "UTC, the system's time base"),
    "refill_interval_days": Default(
        "HAI_REFILL_INTERVAL_DAYS", "NCT03856658; FDA recall notice (every two weeks)"),
    "refill_window_days": Default("HAI_REFILL_WINDOW_DAYS", "NCT03856658 (day 15 ± 4)"),
    "due_soon_hours": Default("HAI_DUE_SOON_HOURS", "our choice"),
    "near_empty_hours": Default("HAI_NEAR_EMPTY_HOURS", "our choice; never let it run dry"),
    "flow_warning_pct": Default(
        "HAI_FLOW_WARNING_PCT", "Intera fast-flow recall (> 15 % above label)"),
    "flow_critical_pct": Default("HAI_FLOW_CRITICAL_PCT", "our choice; verify with the centre"),
    "escalation_delay_seconds": Default(
        "HAI_ESCALATION_DELAY_SECONDS", "our choice (PagerDuty-style default)"),
    "ack_timeout_seconds": Default(
        "HAI_ACK_TIMEOUT_SECONDS", "our choice; an on-call schedule's own value overrides it"),
}
FIELDS = tuple(DEFAULTS)


# ---- pure: the fallback --------------------------------------------------------------------

def own_values(row: CenterSettings | None) -> dict[str, Any]:
    """The values a centre set itself (its nulls left out)."""
    if row is None:
        return {}
    return {name: getattr(row, name) for name in FIELDS if getattr(row, name) is not None}


def effective_values(own: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each field's effective value and where it comes from: the centre's own value, else the
    system default with its variable and source."""
    result: dict[str, dict[str, Any]] = {}
    for name, default in DEFAULTS.items():
        mine = own.get(name)
        result[name] = {
            "value": defaults[name] if mine is None else mine,
            "source": SettingSource.DEFAULT if mine is None else SettingSource.CENTER,
            "default": defaults[name], "default_setting": default.setting,
            "default_source": default.source,
        }
    return result


def threshold_problems(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What the effective values break together (each field's own range is the schema's)."""
    problems: list[tuple[str, str]] = []
    if values["flow_critical_pct"] <= values["flow_warning_pct"]:
        problems.append(("flow_critical_pct", f"must be above the warning band "
                                              f"({values['flow_warning_pct']} %)"))
    if values["due_soon_hours"] > values["refill_interval_days"] * 24:
        problems.append(("due_soon_hours", "must not exceed the refill interval"))
    if values["refill_window_days"] * 2 >= values["refill_interval_days"]:
        problems.append(("refill_window_days", "the window (± days) must be shorter than half "
                                               "the refill interval"))
    return problems


# ---- the per-process cache -----------------------------------------------------------------

def _load(session: Session) -> CentreValues:
    return CentreValues(own={r.center: own_values(r) for r in session.scalars(select(CenterSettings))})


CACHE: TableCache[CentreValues] = TableCache(_load)


def effective_settings(uow: UnitOfWork, settings: SchedulingSettings,
                       center: str | None) -> SchedulingSettings:
    """Scheduling's settings as they apply to one centre: its own values over the defaults."""
    return CACHE.get(uow.session, settings.center_settings_cache_seconds).over(settings, center)


def centers_with_own(uow: UnitOfWork, settings: SchedulingSettings) -> dict[str, SchedulingSettings]:
    """Every centre that set something itself, with its effective settings (the sweep's
    per-centre conditions)."""
    loaded = CACHE.get(uow.session, settings.center_settings_cache_seconds)
    return {c: effective_settings(uow, settings, c) for c, own in loaded.own.items() if own}


# ---- the service ---------------------------------------------------------------------------

def _read(center: str, row: CenterSettings | None, settings: SchedulingSettings) -> CenterSettingsRead:
    values = effective_values(own_values(row), {n: getattr(settings, n) for n in FIELDS})
    return CenterSettingsRead(
        center=center, version=row.version if row else 0,
        updated_by=row.updated_by if row else None, updated_at=row.updated_at if row else None,
        settings={n: CenterSettingRead(**v) for n, v in values.items()})


def _visible(uow: UnitOfWork, center: str) -> None:
    """404 for a centre the caller's token does not cover (its settings are not disclosed)."""
    uow.centers.visible_or_404(center, f"centre {center!r} not found")


def get(*, uow: UnitOfWork, center: str, settings: SchedulingSettings) -> CenterSettingsRead:
    """A centre's effective settings, each with where it comes from (a centre never set: all
    defaults, version 0); 404 for a centre the token does not cover."""
    _visible(uow, center)
    return _read(center, uow.session.get(CenterSettings, center), settings)


def update(*, uow: UnitOfWork, center: str, body: CenterSettingsUpdate, actor: str,
           settings: SchedulingSettings) -> CenterSettingsRead:
    """Replace a centre's own settings (null or absent: the default), audited and announced;
    a 422 when the effective values do not fit together (nothing written); 403 for a centre
    the token does not cover (the caller named it)."""
    uow.centers.require(center)
    new_own = body.model_dump(exclude_none=True)
    defaults = {n: getattr(settings, n) for n in FIELDS}
    problems = threshold_problems({**defaults, **new_own})
    if problems:
        raise Invalid.of(problems)
    now = uow.now()
    # of two admins creating one centre's row at once, neither fails: the second waits, then
    # changes the row the first wrote
    insert_if_absent(uow.session, CenterSettings, {"center": center, "version": 0,
                                                   "updated_by": actor, "updated_at": now})
    row = uow.session.get_one(CenterSettings, center, with_for_update=True,
                              populate_existing=True)
    before = own_values(row)
    if before == new_own:
        return _read(center, row, settings)  # the same values again: nothing to tell
    for name in FIELDS:
        setattr(row, name, new_own.get(name))
    row.version, row.updated_by, row.updated_at = row.version + 1, actor, now
    uow.session.flush()
    uow.audit(actor=actor, action=CHANGED, entity_type=ENTITY, entity_id=center,
              changes={"before": before, "after": new_own, "version": row.version})
    uow.publish(CenterSettingsChangedData(
        center=center, version=row.version, values=CenterSettingsValues(**new_own),
        changed_by=actor, changed_at=now), subject=center)
    CACHE.invalidate_after_commit(uow.session)
    forget_snapshots(uow)  # the registry counts abnormal readings by the centre's band
    return _read(center, row, settings)


def history(*, uow: UnitOfWork, center: str, page: PageParams) -> Page[AuditEntry]:
    """Every change of a centre's settings, newest first (who, when, before and after); 404 for
    a centre the token does not cover."""
    _visible(uow, center)
    table = uow.platform.audit
    stmt = select(table).where(table.c.entity_type == ENTITY, table.c.entity_id == center)
    return paginate(uow.session, stmt, keys=[table.c.id], params=page, descending=True,
                    scalars=False, to_item=AuditEntry.model_validate)
