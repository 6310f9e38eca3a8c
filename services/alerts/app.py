"""Alerts's bootstrap: the real adapters by default; tests pass their own clock or bus."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine

from services.alerts import fhir, handlers, jobs, paging
from services.alerts.models import metadata, platform
from services.alerts.routes import router
from services.alerts.settings import AlertsSettings, get_settings
from shared.audit import audit_router
from shared.clock import Clock
from shared.fhir import mount_fhir
from shared.messaging.base import Bus
from shared.runtime import ServiceRuntime, Subscription, build_runtime
from shared.web import create_service_app

NAME = "alerts"


def bootstrap(
    settings: AlertsSettings | None = None,
    *,
    clock: Clock | None = None,
    bus: Bus | None = None,
    engine: Engine | None = None,
) -> ServiceRuntime:
    """Assemble the alerts service."""
    settings = settings or get_settings()
    runtime = build_runtime(name=NAME, settings=settings, metadata=metadata,
                            platform=platform, clock=clock, bus=bus, engine=engine)
    pager = paging.Pager.attach_to(runtime)
    for spec in handlers.queue_specs():
        handled = {key for _, key in spec.bindings}
        # an abnormal flow's page goes out on the pager's urgent lane, alone
        lane = pager.urgent if spec.name == handlers.FLOW_QUEUE else pager.kick
        every_handler = handlers.make_handlers(settings, lane.page_at_commit)
        # the flow queue keeps one consumer per worker: its readings come one by one, each paging
        consumers = (settings.alerts_event_consumers
                     if spec.name == handlers.QUEUE and settings.amqp_url else 1)
        runtime.subscriptions.append(Subscription(
            queue=spec, handlers={t: h for t, h in every_handler.items() if t in handled},
            consumers=consumers, batch=settings.alerts_consumer_batch,
            prepare=handlers.make_prepare(settings)))
    runtime.jobs.extend(jobs.jobs(runtime))
    return runtime


def create_app(runtime: ServiceRuntime) -> FastAPI:
    """Alerts's FastAPI app."""
    app = create_service_app(runtime, [router, audit_router()], title="HAI alerts",
                             description="Alerts, escalation, on-call rotations, silences, pages")
    mount_fhir(app, fhir.api)
    return app
