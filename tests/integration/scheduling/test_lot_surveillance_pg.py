"""Flow surveillance's running sums on PostgreSQL, where a reading's lot upsert and the sums of
its model's other lots are one statement (a CTE): the same scenarios as on SQLite, whose
verdicts, announcements and agreement with the rebuild from scratch they check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import tests.unit.scheduling.test_lot_surveillance as on_sqlite
from shared.clock import MovableClock
from tests.factories import T0
from tests.helpers import start
from tests.helpers import test_settings as settings_for


def test_a_drifting_lot_is_announced_and_the_rebuild_agrees_on_postgresql(
        tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    settings = settings_for(tmp_path, scheduling_database_url=pg_database("scheduling"))
    on_sqlite.test_a_drifting_lot_is_announced_with_its_evidence_and_a_normal_one_is_not(
        start("scheduling", settings, MovableClock(T0)))


def test_a_reading_entered_in_error_leaves_the_sums_on_postgresql(
        tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    settings = settings_for(tmp_path, scheduling_database_url=pg_database("scheduling"))
    on_sqlite.test_a_reading_entered_in_error_leaves_the_sums(
        start("scheduling", settings, MovableClock(T0)))
