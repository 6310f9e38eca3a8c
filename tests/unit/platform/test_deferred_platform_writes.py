"""A unit of work that defers its audit and outbox rows (`defer_platform_writes`) writes them
when its transaction commits, in order, whichever path commits the session, and drops them
with a rollback: the change, its audit and its outbox commit together or not at all."""

from __future__ import annotations

import json

from sqlalchemy import select

from shared.messaging.inproc import InProcessBus
from shared.messaging.relay import OutboxRelay
from tests.unit.platform.toyservice import toy_runtime


def _stage(uow, *names):
    uow.defer_platform_writes()
    for name in names:
        uow.audit(actor="a", action=f"widget.{name}", entity_type="widget", entity_id=name)
        uow.publish_raw("toy.widget.created", {"id": 1, "name": name, "volume_ml": 1})


def _stored(rt):
    with rt.uow_factory() as uow:
        audit = uow.session.scalars(select(uow.platform.audit.c.action)
                                    .order_by(uow.platform.audit.c.id)).all()
        bodies = uow.session.scalars(select(uow.platform.outbox.c.body)
                                     .order_by(uow.platform.outbox.c.seq)).all()
    return list(audit), [json.loads(b)["data"]["name"] for b in bodies]


def test_deferred_rows_are_written_at_commit_in_order_and_wake_the_relay(tmp_path):
    bus = InProcessBus()
    rt = toy_runtime(tmp_path, bus=bus)
    with rt.uow_factory() as uow:
        _stage(uow, "a", "b", "c")
        assert _stored(rt) == ([], [])  # nothing written before the commit
        rt.uow_factory.outbox_signal.clear()
        uow.commit()
        assert rt.uow_factory.outbox_signal.is_set()
        _stage(uow, "d")  # the unit of work goes on: its next transaction defers too
        uow.session.commit()  # a commit of the session itself writes them as well
    assert _stored(rt) == (["widget.a", "widget.b", "widget.c", "widget.d"], ["a", "b", "c", "d"])
    assert OutboxRelay(rt.uow_factory, lambda: bus).run_once() == 4


def test_deferred_rows_are_dropped_by_a_rollback(tmp_path):
    rt = toy_runtime(tmp_path, bus=InProcessBus())
    with rt.uow_factory() as uow:
        _stage(uow, "a")
        uow.rollback()
        uow.commit()
        _stage(uow, "b")  # left without a commit: the block's end rolls it back
    with rt.uow_factory() as uow:
        _stage(uow, "c")
        uow.commit()
    assert _stored(rt) == (["widget.c"], ["c"])


def test_a_savepoint_s_commit_leaves_them_to_the_transaction_s(tmp_path):
    """SQLAlchemy runs `before_commit` for a savepoint's commit too (the urgent lane claims its
    page in one, as the consumer commits): the rows wait for the transaction's own commit, so
    that a savepoint rolled back after its release cannot take them with it."""
    rt = toy_runtime(tmp_path, bus=InProcessBus())
    with rt.uow_factory() as uow:
        _stage(uow, "a")
        with uow.session.begin_nested():
            pass
        written = uow.session.scalars(select(uow.platform.outbox.c.body)).all()
        assert written == []
        uow.commit()
    assert _stored(rt) == (["widget.a"], ["a"])


def test_a_commit_with_a_savepoint_still_open_writes_them(tmp_path):
    """The session's commit commits the open savepoint first, then the transaction: the rows go
    with the transaction's, not lost between the two."""
    rt = toy_runtime(tmp_path, bus=InProcessBus())
    with rt.uow_factory() as uow:
        _stage(uow, "a")
        uow.session.begin_nested()
        _stage(uow, "b")
        uow.commit()
    assert _stored(rt) == (["widget.a", "widget.b"], ["a", "b"])
