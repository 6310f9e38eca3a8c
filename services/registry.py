"""The composition root's list of what the system is made of: the three services (each with its
own database, migrations and worker), the dashboard, their default ports, and their modules."""

from __future__ import annotations

import importlib
from types import ModuleType

SERVICES = ("inventory", "scheduling", "alerts")
APPS = (*SERVICES, "dashboard")
DEFAULT_PORTS = {"dashboard": 8000, "inventory": 8001, "scheduling": 8002, "alerts": 8003}


def app_module(name: str) -> ModuleType:
    """`services.<name>.app`: its bootstrap (services) and create_app."""
    if name not in APPS:
        raise LookupError(f"unknown service {name!r}; one of {', '.join(APPS)}")
    return importlib.import_module(f"services.{name}.app")


def cli_module(name: str) -> ModuleType | None:
    """`services.<name>.cli`, a service's own sub-command group (`app`), when it has one."""
    try:
        return importlib.import_module(f"services.{name}.cli")
    except ModuleNotFoundError as exc:
        if exc.name != f"services.{name}.cli":
            raise
        return None
