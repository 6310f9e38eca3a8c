"""The whole system's settings: every service's section over the platform base, for the `hai`
command (which may run all of them in one process) and the tests. One environment variable sets
one field; a variable two services read (e.g. `HAI_SWEEP_INTERVAL_SECONDS`, `HAI_FLOW_WARNING_PCT`)
is one field here, with the same default in each section (tests/unit/platform/test_settings_cli.py)."""

from __future__ import annotations

from functools import lru_cache

from services.alerts.settings import AlertsSettings
from services.dashboard.settings import DashboardSettings
from services.hl7_bridge.settings import Hl7BridgeSettings
from services.inventory.settings import InventorySettings
from services.scheduling.settings import SchedulingSettings

SECTIONS: tuple[type, ...] = (InventorySettings, SchedulingSettings, AlertsSettings, DashboardSettings,
                              Hl7BridgeSettings)


class HaiSettings(InventorySettings, SchedulingSettings, AlertsSettings, DashboardSettings,
                  Hl7BridgeSettings):
    """Every section's settings; each service takes it as its own section (a subclass of it)."""


@lru_cache
def get_settings() -> HaiSettings:
    """The system's settings, read once from the environment."""
    return HaiSettings()
