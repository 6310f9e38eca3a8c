"""The bridge's answers to the pharmacy, without sockets or a broker (SQLite, the in-process
bus): the status goes to the outbox for `hai.pharmacy` before AA, and nothing of the patient
reaches a log line, whatever the pharmacy sends."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from services.hl7_bridge.bridge import Bridge, bootstrap
from services.hl7_bridge.models import ForwardedOrder
from shared.clock import MovableClock
from shared.events import PHARMACY_EXCHANGE, EventType
from shared.messaging.inproc import InProcessBus
from shared.migrations import upgrade
from tests.helpers import test_settings as settings_for
from tests.integration.hl7_bridge import fake_pharmacy as fp

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MRN, NAME = "MRN-SECRET-9", "Secretsdottir"
PID = f"PID|1||{MRN}^^^C^MR||{NAME}^Ann"


@pytest.fixture
def bridge(tmp_path: Path) -> Bridge:
    settings = settings_for(tmp_path, hl7_bridge_database_url=f"sqlite:///{tmp_path}/hl7.db")
    upgrade("hl7_bridge", settings.hl7_bridge_database_url)
    b = Bridge(bootstrap(settings, clock=MovableClock(AT), bus=InProcessBus()))
    with b.runtime.uow_factory.begin() as uow:
        uow.session.add(ForwardedOrder(order_id="order-1", order_control="NW",
                                       control_id="N1", first_sent_at=AT, acked_at=AT))
    return b


def _outbox(bridge: Bridge) -> list[tuple[str, str, dict[str, object]]]:
    outbox = bridge.runtime.platform.outbox
    with bridge.runtime.uow_factory() as uow:
        rows = uow.session.execute(select(outbox.c.exchange, outbox.c.routing_key, outbox.c.body))
        return [(r.exchange, r.routing_key, json.loads(r.body)) for r in rows]


def test_an_answer_is_in_the_outbox_before_its_aa(bridge: Bridge) -> None:
    text = fp.order_response("order-1", accepted=True, control_id="P1", at=AT) + "\r" + PID
    assert fp.ack_code(bridge.answer(text.encode(), None).decode()) == ("AA", "P1")
    [(exchange, key, event)] = _outbox(bridge)
    assert (exchange, key) == (PHARMACY_EXCHANGE, EventType.ORDER_STATUS)
    assert event["data"] == {"order_id": "order-1", "status": "accepted", "at": "2026-12-01T12:00:00Z"}
    assert event["subject"] == "order-1"
    assert fp.ack_code(bridge.answer(text.encode(), None).decode()) == ("AA", "P1")  # again
    assert len(_outbox(bridge)) == 1


@pytest.mark.parametrize(("text", "code"), [
    (fp.order_response("ghost", accepted=True, control_id="G1", at=AT) + "\r" + PID, "AR"),
    (f"MSH|^~\\&|P|F|H|C|{MRN}||RRE^O12|P1|P|2.5.1\rORC|OK|order-1\r{PID}", "AE"),
    (f"{PID}\rMSH|^~\\&|P|F|H|C|20261201||RRE^O12|P1|P|2.5.1", "AE"),
    (f"MSH|^~\\&|P|F|H|C|20261201||ADT^A08|P1|P|2.5.1\r{PID}", "AR"),
    # ORC-16, the reason, with a NUL: refused by the status contract
    ("MSH|^~\\&|P|F|H|C|20261201||RRE^O12|P1|P|2.5.1\rORC|UA|order-1" + "|" * 14 + f"^\x00{NAME}", "AE"),
    (f"MSH|^~\\&|P|F|H|C|20261201||RDS^O13|P1|P|2.5.1\rORC|RE|order-1\rRXD|1||{MRN}", "AE"),
])
def test_refused_answers_name_no_patient_in_the_log(bridge: Bridge, text: str, code: str) -> None:
    with capture_logs() as logs:
        reply = bridge.answer(text.encode(), None).decode()
    assert fp.ack_code(reply)[0] == code
    assert bridge.runtime.registry.get_sample_value("hai_hl7_answers_total", {"ack": code}) == 1
    assert logs and MRN not in str(logs) and NAME not in str(logs)
    assert _outbox(bridge) == []


def test_a_batch_that_could_outlast_the_amqp_heartbeat_is_refused(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, hl7_bridge_database_url=f"sqlite:///{tmp_path}/hl7.db",
                            hl7_prefetch=3, hl7_ack_timeout_seconds=10,
                            hl7_connect_timeout_seconds=5, amqp_heartbeat_seconds=30)
    with pytest.raises(ValueError, match="must stay under HAI_AMQP_HEARTBEAT_SECONDS"):
        Bridge(bootstrap(settings, bus=InProcessBus()))
    Bridge(bootstrap(settings.model_copy(update={"hl7_prefetch": 1}), bus=InProcessBus()))
