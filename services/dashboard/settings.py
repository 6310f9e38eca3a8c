"""The dashboard's settings section: where it finds the three services' APIs, and itself."""

from __future__ import annotations

from functools import lru_cache

from services.addresses import BACKENDS, ServiceAddresses

__all__ = ["BACKENDS", "DashboardSettings", "get_settings"]


class DashboardSettings(ServiceAddresses):
    """The platform settings and the dashboard's own (`HAI_` environment variables)."""

    # the dashboard's own origin: form posts must come from it (csrf.py)
    dashboard_url: str = "http://127.0.0.1:8000"


@lru_cache
def get_settings() -> DashboardSettings:
    """The dashboard's settings, read once from the environment."""
    return DashboardSettings()
