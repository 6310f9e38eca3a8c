"""The inbox on SQLite: an event already handled, delivered again in a later batch, is acknowledged
without its handler running; and no retry or dead-letter reason carries SQL or its parameters."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select

from shared.events import CloudEvent
from shared.messaging.base import HEADER_ATTEMPTS, Delivery, QueueSpec
from shared.messaging.consumer import EventConsumer
from tests.unit.platform.toyservice import Seen, on_widget, toy_runtime

QUEUE = QueueSpec("toy.widgets", (("hai.events", "toy.widget.*"),))
SECRET = "MRN-0071-SECRET"  # what a handler's failing statement may carry: it must stay out


# a table of this test's own (not in the toy's metadata): a handler writes a unique value to it
TAGS = Table("tags", MetaData(), Column("id", Integer, primary_key=True, autoincrement=True),
             Column("label", String(64), unique=True))


def _delivery(event: CloudEvent, attempts: int = 0) -> Delivery:
    return Delivery(body=event.to_json_bytes(), routing_key=event.type, exchange="hai.events",
                    message_id=event.id, headers={HEADER_ATTEMPTS: attempts} if attempts else {},
                    redelivered=attempts > 0)


def _widget(name: str = "w") -> CloudEvent:
    return CloudEvent.create(source="/t", type="toy.widget.created",
                             data={"id": 1, "name": name, "volume_ml": 1})


def _count(rt, table) -> int:
    with rt.uow_factory() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(table)))


def test_an_event_handled_in_an_earlier_batch_is_acknowledged_and_not_handled_again(tmp_path):
    rt = toy_runtime(tmp_path)
    consumer = EventConsumer("toy", QUEUE, {"toy.widget.created": on_widget}, rt.uow_factory,
                             max_attempts=3)
    event, other = _widget("a"), _widget("b")
    assert [o.action for o in consumer.process([_delivery(event)])] == ["ack"]
    # the broker hands the same message over again (its ack was lost), alone and in a batch
    again = consumer.process([_delivery(event, attempts=0)])
    assert [(o.action, o.reason) for o in again] == [("ack", None)]
    mixed = consumer.process([_delivery(other), _delivery(event)])
    assert [(o.action, o.reason) for o in mixed] == [("ack", None), ("ack", None)]
    assert _count(rt, Seen) == 2  # a and b, each once
    with rt.uow_factory() as uow:
        inbox = uow.platform.inbox
        assert sorted(uow.session.scalars(select(inbox.c.event_id))) == sorted([event.id, other.id])


def test_failure_reasons_carry_no_sql_and_no_parameters(tmp_path):
    rt = toy_runtime(tmp_path)
    TAGS.create(rt.engine)

    def tag(uow, event):
        uow.session.execute(insert(TAGS).values(label=event.data["label"]))

    consumer = EventConsumer("toy", QUEUE, {"toy.tag": tag}, rt.uow_factory, max_attempts=2)
    first = CloudEvent.create(source="/t", type="toy.tag", data={"label": SECRET})
    clash = CloudEvent.create(source="/t", type="toy.tag", data={"label": SECRET})
    assert [o.action for o in consumer.process([_delivery(first)])] == ["ack"]
    retried = consumer.process([_delivery(clash)])
    dead = consumer.process([_delivery(clash, attempts=1)])
    assert [o.action for o in retried + dead] == ["retry", "dead_letter"]
    for outcome in retried + dead:
        reason = outcome.reason or ""
        assert "UNIQUE constraint failed: tags.label" in reason, reason  # still says what failed
        for leaked in (SECRET, "INSERT", "[SQL", "parameters", "sqlalche.me"):
            assert leaked not in reason, reason


@pytest.mark.parametrize("attempts", [0, 1, 4])
def test_a_redelivery_never_becomes_a_retry(tmp_path, attempts):
    rt = toy_runtime(tmp_path)
    consumer = EventConsumer("toy", QUEUE, {"toy.widget.created": on_widget}, rt.uow_factory,
                             max_attempts=5)
    event = _widget()
    consumer.process([_delivery(event)])
    [outcome] = consumer.process([_delivery(event, attempts=attempts)])
    assert (outcome.action, outcome.reason) == ("ack", None)
    assert _count(rt, Seen) == 1
