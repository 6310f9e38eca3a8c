"""The dashboard's settings section: where it finds the three services' APIs, and itself."""

from __future__ import annotations

from functools import lru_cache

from pydantic import field_validator

from services.addresses import BACKENDS, ServiceAddresses
from services.dashboard.localtime import valid_zone

__all__ = ["BACKENDS", "DashboardSettings", "get_settings"]


class DashboardSettings(ServiceAddresses):
    """The platform settings and the dashboard's own (`HAI_` environment variables)."""

    # the dashboard's own origin: form posts must come from it (csrf.py)
    dashboard_url: str = "http://127.0.0.1:8000"
    # the centre's IANA time zone: every time shown and typed on the dashboard (the APIs stay
    # UTC); read through localtime.zone_for, never directly
    time_zone: str = "UTC"
    # how often the live pages (worklist, pump) reload their state
    refresh_seconds: int = 30

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return valid_zone(value.strip()).key

    @field_validator("refresh_seconds")
    @classmethod
    def _sane_refresh(cls, value: int) -> int:
        if not 2 <= value <= 3600:
            raise ValueError("refresh_seconds must lie between 2 and 3600")
        return value


@lru_cache
def get_settings() -> DashboardSettings:
    """The dashboard's settings, read once from the environment."""
    return DashboardSettings()
