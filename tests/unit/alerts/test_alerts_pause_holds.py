"""What a paused therapy holds back (DOMAIN.md, Therapy pauses), and alerts' copy of a therapy's
status: kept by its `at`, so a repeated or late event changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.alerts import holds, rules
from services.alerts.models import TherapyHold
from shared.clock import MovableClock
from shared.contracts.scheduling import TherapyStatusChangedData
from shared.contracts.vocabulary import AlertKind, Severity, TherapyStatus
from shared.messaging.inproc import InProcessBus
from shared.runtime import ServiceRuntime
from tests.factories import T0, therapy_status_changed
from tests.helpers import start
from tests.helpers import test_settings as make_settings

HELD = {AlertKind.FLOW_ABNORMAL, AlertKind.FLOW_TREND, AlertKind.DELIVERY_LATE}


@pytest.mark.parametrize("kind", list(AlertKind))
@pytest.mark.parametrize("severity", list(Severity))
def test_a_pause_holds_only_warnings_of_the_next_fill_never_a_critical(
        kind: AlertKind, severity: Severity) -> None:
    assert rules.pause_holds(kind=kind, severity=severity) == (
        severity == Severity.WARNING and kind in HELD)


def test_the_refill_alerts_are_never_held_the_paused_pump_still_needs_refilling() -> None:
    for kind in (AlertKind.REFILL_OVERDUE, AlertKind.RESERVOIR_NEAR_EMPTY):
        assert not any(rules.pause_holds(kind=kind, severity=s) for s in Severity)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[ServiceRuntime]:
    h, _ = start("alerts", make_settings(tmp_path), MovableClock(T0), InProcessBus())
    rt = h.runtime
    yield rt
    rt.engine.dispose()


def change(rt: ServiceRuntime, status: str, minutes: float) -> None:
    data = TherapyStatusChangedData.model_validate(therapy_status_changed(status, minutes=minutes))
    with rt.uow_factory() as uow:
        holds.on_therapy_status_changed(uow, data, settings=rt.settings)
        uow.commit()


def kept(rt: ServiceRuntime) -> tuple[str, str]:
    with rt.uow_factory() as uow:
        hold = uow.session.get_one(TherapyHold, "th-1")
        return hold.status, hold.at.isoformat()


@pytest.mark.parametrize("order", [
    [(TherapyStatus.PAUSED, 0), (TherapyStatus.ACTIVE, 30)],
    [(TherapyStatus.ACTIVE, 30), (TherapyStatus.PAUSED, 0)],  # the pause arrives late
    [(TherapyStatus.PAUSED, 0), (TherapyStatus.ACTIVE, 30), (TherapyStatus.ACTIVE, 30),
     (TherapyStatus.PAUSED, 0)],  # repeats
])
def test_the_latest_change_is_kept_whatever_the_order_of_arrival(
        runtime: ServiceRuntime, order: list[tuple[str, float]]) -> None:
    for status, minutes in order:
        change(runtime, status, minutes)
    assert kept(runtime) == (TherapyStatus.ACTIVE, "2026-11-02T08:30:00+00:00")
