"""shared/ is the platform under every service: it imports nothing from services/ (the
composition root, the `hai` command and every service's settings live there)."""

from __future__ import annotations

import ast
from pathlib import Path

SHARED = Path(__file__).resolve().parents[3] / "shared"


def imports_of_services(source: str) -> list[str]:
    """Each `services` module a Python source imports (`import services...`, `from services...
    import`, and `importlib.import_module("services...")` with a literal name)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "services"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "services":
                found.append(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) \
                and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module" \
                and node.args[0].value.split(".")[0] == "services":
            found.append(node.args[0].value)
    return found


def test_the_walk_finds_each_form_of_import() -> None:
    source = ("import services.alerts\nfrom services.registry import SERVICES\n"
              "import importlib\nimportlib.import_module('services.dashboard.demo')\n"
              "from shared import db\nimport servicesx\n")
    assert imports_of_services(source) == ["services.alerts", "services.registry",
                                           "services.dashboard.demo"]


def test_shared_imports_nothing_from_services() -> None:
    files = sorted(SHARED.rglob("*.py"))
    assert len(files) > 20
    offenders = {str(f.relative_to(SHARED.parent)): found for f in files
                 if (found := imports_of_services(f.read_text(encoding="utf-8")))}
    assert offenders == {}, f"shared/ must not know the services: {offenders}"
