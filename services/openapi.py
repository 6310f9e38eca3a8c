"""Each service's OpenAPI document, exported to docs/openapi/<service>.json (`make docs`).

    python -m services.openapi           write the documents
    python -m services.openapi --check   exit 1 naming those that are not current

A document is the app's own (`app.openapi()`, what `/openapi.json` serves), built on the
embedded default settings, an in-memory SQLite engine and the in-process bus: nothing is
started, connected or read from the environment. It is written as canonical JSON (sorted keys,
two-space indent), so that a change to the API is a readable diff of the committed file;
tests/unit/platform/test_openapi_docs.py fails when a committed document is not current.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from shared.messaging.inproc import InProcessBus
from shared.settings import SERVICES, Settings

DOCS = Path(__file__).resolve().parents[1] / "docs" / "openapi"


def document(service: str) -> dict[str, Any]:
    """The OpenAPI document of one service, as its app serves it."""
    module = importlib.import_module(f"services.{service}.app")
    engine = create_engine("sqlite://")
    try:
        # the defaults, without the environment; no demo catalogue: the database stays empty
        settings = Settings.model_construct(inventory_seed_demo_catalogue=False)
        runtime = module.bootstrap(settings, engine=engine, bus=InProcessBus())
        return dict(module.create_app(runtime).openapi())
    finally:
        engine.dispose()


def render(doc: dict[str, Any]) -> str:
    """Canonical JSON: what the committed file holds, byte for byte."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def path_of(service: str) -> Path:
    return DOCS / f"{service}.json"


def stale() -> list[str]:
    """The services whose committed document differs from the app's (or is missing)."""
    out = []
    for service in SERVICES:
        path = path_of(service)
        if not path.is_file() or path.read_text(encoding="utf-8") != render(document(service)):
            out.append(service)
    return out


def write() -> list[Path]:
    """Write every service's document; returns the files written."""
    DOCS.mkdir(parents=True, exist_ok=True)
    written = []
    for service in SERVICES:
        path = path_of(service)
        path.write_text(render(document(service)), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.openapi", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a committed document is not current")
    args = parser.parse_args(argv)
    if args.check:
        behind = stale()
        for service in behind:
            print(f"{path_of(service)} is not current: run `make docs`", file=sys.stderr)
        return 1 if behind else 0
    for path in write():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
