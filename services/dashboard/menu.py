"""The main menu: what the signed-in user's roles can do, each role's first page its home."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class MenuItem:
    """A menu entry and the roles it is for (`admin` sees every entry)."""

    href: str
    label: str
    roles: frozenset[str]


MENU = (
    MenuItem("/worklist", "Worklist", frozenset({"nurse", "oncall"})),
    MenuItem("/alerts", "Alerts", frozenset({"nurse", "oncall", "oncologist"})),
    MenuItem("/refill", "Record refill", frozenset({"nurse"})),
    MenuItem("/deliveries", "Deliveries", frozenset({"pharmacist"})),
    MenuItem("/patients", "Patients", frozenset({"oncologist"})),
    MenuItem("/stock", "Stock", frozenset({"biomed"})),
    MenuItem("/recall", "Recall", frozenset({"biomed"})),
    # the registry: each centre against the consortium (refills, deliveries, pumps, explants)
    MenuItem("/reports", "Reports", frozenset({"oncologist", "pharmacist", "biomed"})),
)
# the page each role starts on (the first that applies)
HOME_BY_ROLE = (("nurse", "/worklist"), ("oncall", "/alerts"), ("pharmacist", "/deliveries"),
                ("oncologist", "/patients"), ("biomed", "/stock"))


def menu_for(roles: Iterable[str]) -> list[MenuItem]:
    """The entries the roles can use."""
    held = set(roles)
    if "admin" in held:
        return list(MENU)
    return [item for item in MENU if item.roles & held]


def home_for(roles: Iterable[str]) -> str:
    """Where a user with these roles starts."""
    held = set(roles)
    return next((path for role, path in HOME_BY_ROLE if role in held), "/worklist")
