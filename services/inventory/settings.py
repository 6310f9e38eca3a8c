"""Inventory's settings section: its database, its API's address and the demo catalogue."""

from __future__ import annotations

from functools import lru_cache

from services.addresses import ServiceAddresses


class InventorySettings(ServiceAddresses):
    """The platform settings and inventory's own (`HAI_` environment variables)."""

    inventory_database_url: str = "sqlite:///var/inventory.db"
    # seed the demo pump-model catalogue (DOMAIN.md) at start-up; off in production
    inventory_seed_demo_catalogue: bool = True


@lru_cache
def get_settings() -> InventorySettings:
    """Inventory's settings, read once from the environment."""
    return InventorySettings()
