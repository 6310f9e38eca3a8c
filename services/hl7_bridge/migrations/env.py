"""Alembic environment of the HL7 v2 pharmacy bridge."""

from services.hl7_bridge.models import metadata
from shared.migrations import run_env

run_env(metadata)
