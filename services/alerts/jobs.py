"""Alerts's scheduled jobs: the pager (pages, retries, escalation, re-notify, holds that end), the
heartbeat watchdog, and the heartbeat out (when HAI_HEARTBEAT_URL is set)."""

from __future__ import annotations

from typing import Any

from services.alerts import paging, service
from shared.runtime import Job, ServiceRuntime


def watchdog(runtime: ServiceRuntime) -> dict[str, Any]:
    """Raise `system_stale` when scheduling's heartbeat has gone quiet."""
    with runtime.uow_factory() as uow:
        facts = service.watchdog(uow, settings=runtime.settings)
        uow.commit()
    if facts.get("stale"):
        paging.pager(runtime).kick.kick()
    return facts


def jobs(runtime: ServiceRuntime) -> list[Job]:
    """The jobs every alerts worker runs (each correct with several workers at once)."""
    settings = runtime.settings
    every = [
        Job("pager", paging.run_pager, interval_seconds=settings.page_sweep_seconds),
        Job("watchdog", watchdog,
            interval_seconds=max(1.0, min(60.0, settings.sweep_interval_seconds / 2))),
    ]
    if settings.heartbeat_url:
        every.append(Job("heartbeat_out", paging.ping_heartbeat,
                         interval_seconds=settings.heartbeat_interval_seconds))
    return every
