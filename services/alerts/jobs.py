"""Alerts's scheduled jobs: the pager (pages, retries, escalation, re-notify, holds that end), the
heartbeat watchdog, and the heartbeat out (when HAI_HEARTBEAT_URL is set)."""

from __future__ import annotations

from typing import Any

from services.alerts import handlers, paging, service
from shared.runtime import Job, ServiceRuntime


def watchdog(runtime: ServiceRuntime) -> dict[str, Any]:
    """Raise `system_stale` when scheduling's heartbeat has gone quiet."""
    with runtime.uow_factory() as uow:
        facts = service.watchdog(uow, settings=runtime.settings)
        uow.commit()
    if facts.get("stale"):
        paging.pager(runtime).kick.kick()
    return facts


def arm_urgent_lane(runtime: ServiceRuntime) -> dict[str, Any]:
    """Arm the flow consumer's urgent lane in a worker of abnormal flows (its pages are sent as
    its consumer commits them; a failed one is retried by the pager of the other workers)."""
    paging.pager(runtime).urgent.armed = True
    return {}


def jobs(runtime: ServiceRuntime) -> list[Job]:
    """The jobs every alerts worker runs (each correct with several workers at once)."""
    settings = runtime.settings
    every = [
        # the sweep over every due page runs beside the burst (workers of alerts.events), never
        # in a worker of abnormal flows alone: there it would send a burst's hundreds of pages
        # in the interpreter that pages an abnormal flow
        Job("pager", paging.run_pager, interval_seconds=settings.page_sweep_seconds,
            queues=frozenset({handlers.QUEUE})),
        Job("pager_urgent", arm_urgent_lane, interval_seconds=settings.page_sweep_seconds,
            queues=frozenset({handlers.FLOW_QUEUE})),
        Job("watchdog", watchdog,
            interval_seconds=max(1.0, min(60.0, settings.sweep_interval_seconds / 2))),
    ]
    if settings.heartbeat_url:
        every.append(Job("heartbeat_out", paging.ping_heartbeat,
                         interval_seconds=settings.heartbeat_interval_seconds))
    return every
