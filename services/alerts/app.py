"""Alerts's bootstrap: the real adapters by default; tests pass their own clock or bus."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine

from services.alerts.models import metadata, platform
from shared.clock import Clock
from shared.messaging.base import Bus
from shared.runtime import ServiceRuntime, build_runtime
from shared.settings import Settings, get_settings
from shared.web import create_service_app

NAME = "alerts"


def bootstrap(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    bus: Bus | None = None,
    engine: Engine | None = None,
) -> ServiceRuntime:
    """Assemble the alerts service."""
    return build_runtime(name=NAME, settings=settings or get_settings(), metadata=metadata,
                         platform=platform, clock=clock, bus=bus, engine=engine)


def create_app(runtime: ServiceRuntime) -> FastAPI:
    """Alerts's FastAPI app."""
    return create_service_app(runtime, [], title="HAI alerts")
