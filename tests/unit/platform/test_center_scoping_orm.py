"""The ORM hook of centre scoping (shared/scoping.py) on inventory's pumps: every ORM SELECT
of a scoped session is limited, whether it loads entities, columns, counts or groups; `get`
finds nothing of another centre; Core statements on the bare table are not (they must use
`CenterScope.filter`), and an unscoped session (background work) sees everything."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from services.inventory.models import Base, DeviceHistory, Pump, PumpModel
from shared.scoping import CenterScope, scope_session, session_scope, unscoped

NOW = datetime(2026, 11, 2, 8, tzinfo=UTC)
SOUTH = CenterScope(frozenset({"south"}))


@pytest.fixture
def session() -> Any:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(PumpModel(code="M", manufacturer="a", name="n", gtin="1", reservoir_ml=30,
                        nominal_flow_ml_per_day=1, demo=False, created_at=NOW))
        for serial, center in (("A", "north"), ("B", "south"), ("C", None)):
            s.add(Pump(serial_number=serial, model_code="M", gtin="1", lot_number="L",
                       expiry_date=date(2030, 1, 1), reservoir_ml=30, labeled_flow_ml_per_day=1,
                       status="in_stock", center=center, created_at=NOW, updated_at=NOW))
            s.add(DeviceHistory(serial_number=serial, at=NOW, actor="t", action="register",
                                from_status=None, to_status="in_stock", details={}))
        s.commit()
        yield s


def test_every_orm_select_of_a_scoped_session_is_limited(session: Session) -> None:
    scope_session(session, SOUTH)
    assert session.scalars(select(Pump.serial_number).order_by(Pump.serial_number)).all() == ["B", "C"]
    assert session.scalar(select(func.count()).select_from(Pump)) == 2
    assert dict(session.execute(select(Pump.center, func.count()).group_by(Pump.center)).all()) \
        == {None: 1, "south": 1}
    assert session.get(Pump, "A") is None
    assert sorted(session.scalars(select(DeviceHistory.serial_number))) == ["B", "C"]
    joined = select(DeviceHistory.serial_number).join(Pump, Pump.serial_number == DeviceHistory.serial_number)
    assert sorted(session.scalars(joined)) == ["B", "C"]


def test_core_statements_are_not_limited_unless_filtered(session: Session) -> None:
    scope_session(session, SOUTH)
    table = Pump.__table__
    assert len(session.execute(select(table.c.serial_number)).all()) == 3
    limited = SOUTH.filter(select(table.c.serial_number), table.c.center, or_unassigned=True)
    assert sorted(session.scalars(limited)) == ["B", "C"]


def test_an_unscoped_or_every_centre_session_sees_every_row(session: Session) -> None:
    assert session.scalar(select(func.count()).select_from(Pump)) == 3
    scope_session(session, CenterScope(None))
    assert session.scalar(select(func.count()).select_from(Pump)) == 3
    scope_session(session, CenterScope(frozenset()))
    assert session.scalars(select(Pump.serial_number)).all() == ["C"]  # stock alone


def test_unscoped_lifts_the_scope_for_its_block_only(session: Session) -> None:
    scope_session(session, SOUTH)
    count = select(func.count()).select_from(Pump)
    with unscoped(session):
        assert session.scalar(count) == 3  # the consortium's figures
    assert session.scalar(count) == 2 and session_scope(session) == SOUTH
    with pytest.raises(RuntimeError), unscoped(session):
        raise RuntimeError("a failing block")
    assert session.scalar(count) == 2  # restored after a failure too
