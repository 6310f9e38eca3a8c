"""The dashboard's settings section: where it finds the three services' APIs, and itself."""

from __future__ import annotations

from functools import lru_cache

from shared.settings import Settings

BACKENDS = ("inventory", "scheduling", "alerts")  # the APIs the dashboard calls


class DashboardSettings(Settings):
    """The platform settings and the dashboard's own (`HAI_` environment variables)."""

    inventory_url: str = "http://127.0.0.1:8001"
    scheduling_url: str = "http://127.0.0.1:8002"
    alerts_url: str = "http://127.0.0.1:8003"
    # the dashboard's own origin: form posts must come from it (csrf.py)
    dashboard_url: str = "http://127.0.0.1:8000"

    def service_url(self, service: str) -> str:
        """Where one backend's HTTP API is found."""
        if service not in BACKENDS:
            raise LookupError(f"the dashboard calls no service {service!r}")
        return str(getattr(self, f"{service}_url"))


@lru_cache
def get_settings() -> DashboardSettings:
    """The dashboard's settings, read once from the environment."""
    return DashboardSettings()
