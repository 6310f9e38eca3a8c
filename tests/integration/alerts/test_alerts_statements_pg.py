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
from tests.factories import (
    T0,
    flow_recorded,
    oncall_body,
    patient_center_changed,
    recall_issued,
    refill_completed,
    refill_overdue,
)
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
    # the batch's patient transfers and open alerts each read ahead in one statement, and the
    # alerts, their timelines and pages inserted at the commit in one flush: inbox claim,
    # transfers, open alerts (locked), silences, on-call table, INSERT alerts, timeline, pages:
    # 8, and the 2 COPYs (103 before the look-ahead, 242 before that)
    assert sum(s.startswith("SELECT patient_transfers") for s in statements) == 1, statements
    assert sum(s.startswith("SELECT alerts") for s in statements) == 1, statements
    assert len(statements) <= 10, "\n".join(statements)
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


# ---- a batch read ahead: what its handlers see of the transaction's own writes ---------------

@pytest.fixture
def transactions(h: Harness) -> Iterator[Callable[[], int]]:  # noqa: F811
    """How many consumer transactions began (inbox claims): a batch that fails on a duplicate
    open alert goes again one event at a time, and ends right, but in more of them."""
    claims = 0

    def executed(_conn: Any, _cur: Any, statement: str, *_: Any) -> None:
        nonlocal claims
        claims += statement.startswith("INSERT INTO inbox")

    sa_event.listen(h.runtime.engine, "before_cursor_execute", executed)
    yield lambda: claims
    sa_event.remove(h.runtime.engine, "before_cursor_execute", executed)


def _alerts(h: Harness) -> list[Alert]:  # noqa: F811
    with h.runtime.uow_factory() as uow:
        alerts = list(uow.session.scalars(select(Alert).order_by(Alert.dedup_key)))
        uow.session.expunge_all()
        return alerts


def test_a_key_raised_twice_in_one_batch_repeats_the_alert_the_batch_raised(h, bus, transactions):  # noqa: F811
    put(h, "north", oncall_body([("ann", "log", "ann")]))
    _handle(h, bus, [(EventType.REFILL_OVERDUE, refill_overdue("appt-1", "SN1", overdue_hours=5.0)),
                     (EventType.REFILL_OVERDUE, refill_overdue("appt-2", "SN2")),
                     (EventType.REFILL_OVERDUE, refill_overdue("appt-1", "SN1", overdue_hours=6.0))])
    (first, second) = _alerts(h)
    assert (first.dedup_key, first.occurrences) == ("refill_overdue:appt-1", 2)
    assert "overdue by 6 h" in first.summary and second.occurrences == 1
    assert transactions() == 1  # in the batch's one transaction, not after its failure


def test_an_alert_the_batch_resolved_is_not_open_to_a_later_event_of_it(h, bus, transactions):  # noqa: F811
    put(h, "north", oncall_body([("ann", "log", "ann")]))
    _handle(h, bus, [(EventType.REFILL_OVERDUE, refill_overdue("appt-1", "SN1"))])
    (earlier,) = _alerts(h)
    before = transactions()
    # read ahead at the batch's start, the open alert is resolved by the refill, in memory
    # only; the sweep's next overdue of the same appointment raises a new one
    _handle(h, bus, [(EventType.REFILL_OVERDUE, refill_overdue("appt-2", "SN2")),
                     (EventType.REFILL_COMPLETED, refill_completed("rf-1", "SN1")),
                     (EventType.REFILL_OVERDUE, refill_overdue("appt-1", "SN1"))])
    alerts = {a.id: a for a in _alerts(h)}
    assert alerts[earlier.id].status == "resolved" and alerts[earlier.id].occurrences == 1
    again = [a for a in alerts.values() if a.dedup_key == "refill_overdue:appt-1" and a.id != earlier.id]
    assert len(again) == 1 and again[0].status == "firing"
    assert transactions() - before == 1


def test_a_transfer_in_the_batch_moves_the_later_facts_naming_the_old_centre(h, bus, transactions):  # noqa: F811
    put(h, "north", oncall_body([("ann", "log", "ann")]))
    put(h, "south", oncall_body([("sue", "log", "sue")]))
    # the patient's transfers are read ahead (none) before the batch's transfer is handled
    _handle(h, bus, [
        (EventType.REFILL_OVERDUE, refill_overdue("appt-0", "SN0", mrn="MRN-6")),
        (EventType.REFILL_OVERDUE, refill_overdue("appt-1", "SN1", mrn="MRN-7")),
        (EventType.PATIENT_CENTER_CHANGED, patient_center_changed("south", mrn="MRN-7", serial="SN1")),
        (EventType.REFILL_OVERDUE, refill_overdue("appt-2", "SN1", mrn="MRN-7")),
    ])
    assert [(a.dedup_key, a.center) for a in _alerts(h)] == [("refill_overdue:appt-0", "north"),
        ("refill_overdue:appt-1", "south"), ("refill_overdue:appt-2", "south")]
    with h.runtime.uow_factory() as uow:
        pages = uow.session.execute(select(Notification.recipient, Notification.status)).all()
    # north's page of the first, unsent, is cancelled by the transfer; south pages both
    assert sorted(map(tuple, pages)) == [("ann", "cancelled"), ("ann", "pending"),
                                         ("sue", "pending"), ("sue", "pending")]
    assert transactions() == 1


def test_a_recall_reads_its_pumps_open_alerts_in_one_statement(h, bus, consumer_statements):  # noqa: F811
    put(h, "north", oncall_body([("ann", "log", "ann")]))
    implanted = [{"serial_number": f"SN{i:03}", "patient_mrn": f"MRN-{i}", "center": "north"}
                 for i in range(50)]
    _handle(h, bus, [(EventType.RECALL_ISSUED, recall_issued(implanted=implanted[:10]))])
    # the recall announced again (another event), now naming all 50: 10 repeat, 40 are new
    _handle(h, bus, [(EventType.RECALL_ISSUED, recall_issued(implanted=implanted))])
    statements = consumer_statements()
    assert sum(s.startswith("SELECT alerts") for s in statements) == 1, statements
    assert sum(s.startswith("SELECT patient_transfers") for s in statements) == 1, statements
    assert len(statements) <= 10, "\n".join(statements)
    alerts = _alerts(h)
    assert len(alerts) == 50
    assert sorted(a.occurrences for a in alerts) == [1] * 40 + [2] * 10
    assert T0 <= alerts[0].first_raised_at


def test_a_bad_event_in_a_batch_read_ahead_is_dead_lettered_and_the_rest_raised(h, bus):  # noqa: F811
    """The look-ahead reads every event's data first: one that is malformed fails there as in
    its handler, the batch goes one event at a time, that one is dead-lettered with the reason
    and the others are raised."""
    put(h, "north", oncall_body([("ann", "log", "ann")]))
    bus.declare(h.runtime.all_queues())
    publish(bus, EventType.REFILL_OVERDUE, refill_overdue("appt-1", "SN1"), time=T0)
    publish(bus, EventType.REFILL_OVERDUE, {"id": "appt-2", "pump_serial": "SN2"}, time=T0)
    publish(bus, EventType.REFILL_OVERDUE, refill_overdue("appt-3", "SN3"), time=T0)
    outcomes = deliver([h], bus)
    assert [o.action for o in outcomes] == ["ack", "dead_letter", "ack"], outcomes
    assert "malformed hai.scheduling.refill.overdue" in (outcomes[1].reason or "")
    assert [a.dedup_key for a in _alerts(h)] == ["refill_overdue:appt-1", "refill_overdue:appt-3"]
