"""`GET /v1/centers` on PostgreSQL (a grouped keyset page, a centre beyond ASCII)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.helpers import start
from tests.helpers import test_settings as settings_for
from tests.unit.scheduling.test_centers import check_centers


def test_centers_on_postgres(tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    settings = settings_for(tmp_path, scheduling_database_url=pg_database("scheduling"))
    h, _ = start("scheduling", settings)
    check_centers(h)
