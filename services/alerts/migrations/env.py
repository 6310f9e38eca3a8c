"""Alembic environment of the alerts service."""

from services.alerts.models import metadata
from shared.migrations import run_env

run_env(metadata)
