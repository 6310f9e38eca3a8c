"""Where the services' HTTP APIs are found: read by the dashboard (it calls them), by each
service's FHIR API (references to another service's resources are absolute URLs) and by
`hai inventory import`. One setting per address, with one default, in every section."""

from __future__ import annotations

from shared.settings import Settings

BACKENDS = ("inventory", "scheduling", "alerts")


class ServiceAddresses(Settings):
    """The three APIs' base URLs (`HAI_INVENTORY_URL`, `HAI_SCHEDULING_URL`, `HAI_ALERTS_URL`)."""

    inventory_url: str = "http://127.0.0.1:8001"
    scheduling_url: str = "http://127.0.0.1:8002"
    alerts_url: str = "http://127.0.0.1:8003"

    def service_url(self, service: str) -> str:
        """Where one service's HTTP API is found."""
        if service not in BACKENDS:
            raise LookupError(f"no service API {service!r}; one of {', '.join(BACKENDS)}")
        return str(getattr(self, f"{service}_url"))
