"""Inventory's bootstrap: the real adapters by default; tests pass their own clock or bus."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine

from services.inventory import fhir
from services.inventory.catalogue import seed_demo_catalogue
from services.inventory.handlers import subscriptions
from services.inventory.models import metadata, platform
from services.inventory.routes import router
from services.inventory.settings import InventorySettings, get_settings
from shared.audit import audit_router
from shared.clock import Clock
from shared.fhir import mount_fhir
from shared.messaging.base import Bus
from shared.runtime import ServiceRuntime, build_runtime
from shared.web import create_service_app

NAME = "inventory"


def bootstrap(
    settings: InventorySettings | None = None,
    *,
    clock: Clock | None = None,
    bus: Bus | None = None,
    engine: Engine | None = None,
) -> ServiceRuntime:
    """Assemble the inventory service (its schema must be migrated; seeds the demo catalogue;
    consumes patient transfers)."""
    settings = settings or get_settings()
    runtime = build_runtime(name=NAME, settings=settings, metadata=metadata,
                            platform=platform, clock=clock, bus=bus, engine=engine)
    runtime.subscriptions.extend(subscriptions())
    if settings.inventory_seed_demo_catalogue:
        seed_demo_catalogue(runtime.uow_factory)
    return runtime


def create_app(runtime: ServiceRuntime) -> FastAPI:
    """Inventory's FastAPI app."""
    app = create_service_app(runtime, [router, audit_router()], title="HAI inventory",
                             description="Pump models, pumps and serial numbers, implants, recalls")
    mount_fhir(app, fhir.api)
    return app
