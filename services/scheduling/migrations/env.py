"""Alembic environment of the scheduling service."""

from services.scheduling.models import metadata
from shared.migrations import run_env

run_env(metadata)
