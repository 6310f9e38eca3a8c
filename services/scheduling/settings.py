"""Scheduling's settings section."""

from __future__ import annotations

from functools import lru_cache

from shared.settings import Settings


class SchedulingSettings(Settings):
    """The platform settings and scheduling's own (`HAI_` environment variables)."""


@lru_cache
def get_settings() -> SchedulingSettings:
    """Scheduling's settings, read once from the environment."""
    return SchedulingSettings()
