"""The alerts tests' users."""

from __future__ import annotations

from tests.helpers import auth

ONCALL = auth("oncall", sub="oncall-olga")
NURSE = auth("nurse", sub="nurse-nina")
