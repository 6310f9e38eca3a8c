"""Scheduling's bootstrap: the real adapters by default; tests pass their own clock or bus."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine

from services.scheduling import fhir, reports
from services.scheduling.drift import rebuild_job
from services.scheduling.handlers import PHARMACY_ORDERS_QUEUE, subscriptions
from services.scheduling.jobs import scheduler_sweep, sweep_job
from services.scheduling.models import metadata, platform
from services.scheduling.routes import router
from services.scheduling.settings import SchedulingSettings, get_settings
from shared.audit import audit_router
from shared.clock import Clock
from shared.fhir import mount_fhir
from shared.messaging.base import Bus
from shared.runtime import ServiceRuntime, build_runtime
from shared.web import create_service_app

NAME = "scheduling"


def bootstrap(
    settings: SchedulingSettings | None = None,
    *,
    clock: Clock | None = None,
    bus: Bus | None = None,
    engine: Engine | None = None,
) -> ServiceRuntime:
    """Assemble the scheduling service: consumers, the pharmacy orders queue, the sweep."""
    settings = settings or get_settings()
    runtime = build_runtime(name=NAME, settings=settings, metadata=metadata, platform=platform,
                            clock=clock, bus=bus, engine=engine)
    runtime.subscriptions.extend(subscriptions(settings))
    runtime.declared_queues.append(PHARMACY_ORDERS_QUEUE)
    runtime.jobs.append(sweep_job(settings))
    runtime.jobs.append(rebuild_job(settings))
    runtime.jobs.append(reports.report_job(settings))
    runtime.readiness_checks.append(scheduler_sweep)
    return runtime


def create_app(runtime: ServiceRuntime) -> FastAPI:
    """Scheduling's FastAPI app."""
    app = create_service_app(
        runtime, [router, audit_router()], title="HAI scheduling",
        description="Patients, therapies, refill appointments and records, flow readings, "
                    "drug delivery orders",
    )
    mount_fhir(app, fhir.api)
    return app
