"""A service's own state on its runtime is typed: attached once by its bootstrap, found by its
type (shared/ knows no service's types)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.platform.toyservice import toy_runtime


@dataclass
class ToyState:
    widgets_seen: int


@dataclass
class OtherState:
    name: str


def test_a_part_is_found_by_its_type_and_a_missing_one_is_named(tmp_path: Path) -> None:
    runtime = toy_runtime(tmp_path)
    state = runtime.attach(ToyState(widgets_seen=0))
    other = runtime.attach(OtherState(name="x"))
    assert runtime.part(ToyState) is state and runtime.part(OtherState) is other
    runtime.part(ToyState).widgets_seen += 1
    assert state.widgets_seen == 1
    with pytest.raises(LookupError, match="toy runtime has no int"):
        runtime.part(int)


def test_the_runtime_knows_when_it_was_built_on_its_clock(tmp_path: Path) -> None:
    runtime = toy_runtime(tmp_path)
    assert runtime.started_at == runtime.clock.now()
