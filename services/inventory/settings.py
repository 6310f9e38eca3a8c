"""Inventory's settings section: its database, its API's address and the demo catalogue."""

from __future__ import annotations

from functools import lru_cache

from shared.settings import Settings


class InventorySettings(Settings):
    """The platform settings and inventory's own (`HAI_` environment variables)."""

    inventory_database_url: str = "sqlite:///var/inventory.db"
    inventory_url: str = "http://127.0.0.1:8001"  # where `hai inventory import` finds the API
    # seed the demo pump-model catalogue (DOMAIN.md) at start-up; off in production
    inventory_seed_demo_catalogue: bool = True


@lru_cache
def get_settings() -> InventorySettings:
    """Inventory's settings, read once from the environment."""
    return InventorySettings()
