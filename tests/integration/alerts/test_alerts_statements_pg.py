"""SQL statements of the consumer transaction that raises alerts, on PostgreSQL: each is a round
trip, and in a burst the alerts process is bound by them (issue 25). A new alert is inserted
once with what paging decided (no early flush then UPDATEs), its timeline entries in one INSERT,
and the silences in force are read once per transaction. Ceilings, with the counts measured."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select

from services.alerts.models import Alert, AlertEvent, Notification
from shared.events import EventType
from shared.messaging.inproc import InProcessBus
from tests.factories import flow_recorded, oncall_body, refill_overdue
from tests.helpers import Harness, deliver, publish
from tests.integration.alerts.test_alerts_paging_loop_pg import bus, h, put  # noqa: F401

pytestmark = pytest.mark.usefixtures("bus")


@pytest.fixture
def consumer_statements(h: Harness) -> Iterator[Callable[[], list[str]]]:  # noqa: F811
    """The statements of the last consumer transaction: from its inbox claim to its commit, on
    its own connection (the outbox relay's statements are on others)."""
    seen: list[tuple[Any, str]] = []

    def executed(conn: Any, _cur: Any, statement: str, *_: Any) -> None:
        seen.append((conn.connection.dbapi_connection, statement.split("\n")[0][:100]))

    def committed(conn: Any) -> None:
        seen.append((conn.connection.dbapi_connection, "COMMIT"))

    engine = h.runtime.engine
    sa_event.listen(engine, "before_cursor_execute", executed)
    sa_event.listen(engine, "commit", committed)

    def last_transaction() -> list[str]:
        start = max(i for i, (_, s) in enumerate(seen) if s.startswith("INSERT INTO inbox"))
        conn = seen[start][0]
        out: list[str] = []
        for c, statement in seen[start:]:
            if c is conn:
                if statement == "COMMIT":
                    return out
                out.append(statement)
        raise AssertionError("the consumer's transaction did not commit")

    yield last_transaction
    sa_event.remove(engine, "before_cursor_execute", executed)
    sa_event.remove(engine, "commit", committed)


def _handle(h: Harness, bus: InProcessBus, events: list[tuple[str, dict[str, Any]]]) -> None:  # noqa: F811
    """Publish the events, then hand them to the consumer together: one transaction."""
    bus.declare(h.runtime.all_queues())
    for event_type, data in events:
        publish(bus, event_type, data, time=h.runtime.clock.now())
    outcomes = deliver([h], bus)
    assert outcomes and all(o.action == "ack" for o in outcomes), outcomes


def test_one_flow_alert_is_raised_and_paged_in_a_few_statements(h, bus, consumer_statements):  # noqa: F811
    put(h, "north", oncall_body([("ann", "log", "ann")], [("bob", "log", "bob")]))
    _handle(h, bus, [(EventType.FLOW_RECORDED, flow_recorded("SN1", 40))])
    statements = consumer_statements()
    # inbox claim; patient transfer, open alert, silences, on-call table; INSERT alert, its
    # timeline (raised + page planned: one statement), audit, page, outbox: 10 (13 before)
    assert len(statements) <= 10, "\n".join(statements)
    assert not [s for s in statements if s.startswith("UPDATE alerts")], statements
    with h.runtime.uow_factory() as uow:
        alert = uow.session.scalars(select(Alert)).one()
        assert alert.next_escalation_at is not None and alert.escalation_level == 1
        actions = uow.session.scalars(select(AlertEvent.action).order_by(AlertEvent.id)).all()
        assert actions == ["raised", "page_planned"]
        assert uow.session.scalars(select(Notification.alert_id)).all() == [alert.id]


def test_a_batch_of_twenty_alerts_reads_silences_and_oncall_once(h, bus, consumer_statements):  # noqa: F811
    put(h, "north", oncall_body([("ann", "log", "ann")], [("bob", "log", "bob")]))
    _handle(h, bus, [(EventType.REFILL_OVERDUE,
                      refill_overdue(f"appt-{i}", f"SN{i:03}", mrn=f"MRN-{i}", hours_to_empty=5.0))
                     for i in range(20)])
    statements = consumer_statements()
    assert sum(s.startswith("SELECT silences") for s in statements) == 1, statements
    assert sum(s.startswith("SELECT oncall_schedules") for s in statements) == 1, statements
    assert not [s for s in statements if s.startswith("UPDATE alerts")], statements
    # audit and outbox rows at the commit, one COPY per table (`bulk_insert`: on the driver's
    # connection, unseen here), none per alert
    assert not [s for s in statements if s.startswith(("INSERT INTO audit", "INSERT INTO outbox"))]
    # inbox claim, silences, on-call table once; per alert: patient transfer, open alert;
    # INSERT alert, timeline, page: 103, and the 2 COPYs (242 before)
    assert len(statements) <= 3 + 20 * 5, "\n".join(statements)
    with h.runtime.uow_factory() as uow:
        alerts = uow.session.scalars(select(Alert.id)).all()
        assert len(alerts) == 20
        assert len(uow.session.scalars(select(Notification)).all()) == 20
        audit = uow.platform.audit
        assert sorted(uow.session.scalars(select(audit.c.entity_id).where(
            audit.c.action == "alert.raised")).all()) == sorted(alerts)
        assert len(uow.session.scalars(select(uow.platform.outbox.c.seq)).all()) == 20


def test_what_a_transaction_writes_is_seen_by_its_kept_lookups(h):  # noqa: F811
    """A silence or an on-call table the transaction itself writes is seen at once, and what
    another transaction committed is seen by the next one: nothing is kept past a commit."""
    from datetime import timedelta

    from services.alerts import paging, service
    from services.alerts.schemas import OncallIn, SilenceIn
    from shared.db import new_id

    now = h.runtime.clock.now()
    alert = Alert(id=new_id(), kind="refill_overdue", severity="warning", pump_serial="SN9",
                  center="north")
    silence = SilenceIn.model_validate({"matchers": {"pump_serial": "SN9"}, "starts_at": now,
                                        "ends_at": now + timedelta(hours=1), "reason": "test"})
    with h.runtime.uow_factory() as uow:
        assert paging.active_silence(uow, alert) is None
        assert paging.schedule_for(uow, "north") is None
        made = service.create_silence(uow=uow, body=silence, actor="olga")
        assert paging.active_silence(uow, alert).id == made.id  # type: ignore[union-attr]
        service.put_oncall(uow=uow, center="north", actor="olga", allow_private=True,
                           body=OncallIn.model_validate(oncall_body([("ann", "log", "ann")])))
        assert paging.schedule_for(uow, "north").center == "north"  # type: ignore[union-attr]
        uow.rollback()
        assert paging.active_silence(uow, alert) is None
        assert paging.schedule_for(uow, "north") is None
        # another transaction commits a silence: this one's next transaction sees it
        with h.runtime.uow_factory() as other:
            made = service.create_silence(uow=other, body=silence, actor="olga")
            other.commit()
        assert paging.active_silence(uow, alert) is None  # still the same transaction
        uow.commit()
        assert paging.active_silence(uow, alert).id == made.id  # type: ignore[union-attr]
