"""The bridge's HL7 v2 text, without sockets: the RDE^O11 of an order (read back by both
libraries), the answers' statuses, and the ACK codes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hl7apy.parser import parse_message

from services.hl7_bridge import domain
from services.hl7_bridge.domain import Identity, Refused, Unparseable
from shared.contracts.pharmacy import OrderRequestedData
from tests.integration.hl7_bridge import fake_pharmacy as fp
from tests.integration.hl7_bridge.fake_pharmacy import order_data

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ID = Identity("HAI", "HAI-CENTRE", "PHARMSYS", "PHARMACY")


def order(order_id: str = "order-1", **patient: object) -> OrderRequestedData:
    data = order_data(order_id)
    data["patient"].update(patient)
    return OrderRequestedData.model_validate(data)


def rde(order_control: domain.OrderControl = "NW", **patient: object) -> str:
    return domain.order_message(order(**patient), order_control=order_control, identity=ID, now=NOW)


def test_the_rde_o11_carries_the_order_and_reads_back_in_hl7apy() -> None:
    text = rde()
    assert text.endswith("\r") and "\n" not in text
    m = parse_message(text, find_groups=False)
    assert m.msh.msh_9.to_er7() == "RDE^O11^RDE_O11" and m.msh.msh_12.value == "2.5.1"
    assert (m.msh.msh_3.value, m.msh.msh_4.value, m.msh.msh_5.value, m.msh.msh_6.value) == (
        "HAI", "HAI-CENTRE", "PHARMSYS", "PHARMACY")
    assert m.msh.msh_7.value == "20261201100000+0000"
    assert m.pid.pid_3.cx_1.value == "MRN-7" and m.pid.pid_7.value == "19600501"
    assert (m.orc.orc_1.value, m.orc.orc_2.ei_1.value) == ("NW", "order-1")
    assert (m.rxe.rxe_2.ce_1.value, m.rxe.rxe_3.value, m.rxe.rxe_5.ce_1.value) == ("FUDR", "117.6", "mg")
    assert (m.rxe.rxe_10.value, m.rxe.rxe_11.ce_1.value) == ("30", "mL")
    assert (m.rxe.rxe_23.value, m.rxe.rxe_24.ce_1.value) == ("1", "mL/d")
    assert m.rxr.rxr_1.ce_1.value == "IA" and m.rxr.rxr_2.cwe_2.value == "Hepatic artery"
    assert m.tq1.tq1_7.value == "20261203080000+0000"
    assert [(r.rxc_1.value, r.rxc_2.ce_1.value, r.rxc_3.value, r.rxc_4.ce_1.value) for r in m.rxc] == [
        ("A", "FUDR", "117.6", "mg"), ("A", "DEXA", "20", "mg"), ("A", "HEP", "30000", "[iU]"),
        ("B", "NACL09", "30", "mL")]
    assert m.rxc[3].rxc_2.ce_2.value == "0.9% sodium chloride to 30 mL"
    assert (m.obx.obx_5.to_er7(), m.obx.obx_6.ce_1.value) == ("70", "kg")


def test_delimiters_in_the_data_are_escaped_and_read_back_unchanged() -> None:
    text = rde(family_name="A|B^C&D~E\\F", given_name="line\nbreak")
    m = domain.parse(text)
    assert domain.field(m, "PID", 5, 1) == "A|B^C&D~E\\F"
    assert "line\\.br\\break" in text
    assert domain.field(m, "PID", 5, 2) == "line\rbreak"  # sent as HL7 \.br\, read back
    assert len(m.segments("PID")) == 1 and len(m.segment("PID")) == 8


def test_the_control_id_is_stable_per_order_and_action_and_fits_msh_10() -> None:
    nw, again, ca = rde("NW"), rde("NW"), rde("CA")
    ids = [domain.field(domain.parse(t), "MSH", 10) for t in (nw, again, ca)]
    assert ids[0] == ids[1] == domain.control_id("order-1", "NW") and ids[2] != ids[0]
    assert all(len(i) == 20 for i in ids)
    assert domain.field(domain.parse(ca), "ORC", 1) == "CA"
    assert domain.control_id("order-2", "NW") != ids[0]


def test_an_accepted_rre_o12() -> None:
    answer = domain.read_answer(domain.parse(
        fp.order_response("order-1", accepted=True, control_id="P1", at=AT)))
    assert (answer.order_id, answer.status, answer.at, answer.reason) == ("order-1", "accepted", AT, None)
    assert answer.status_data() == {"order_id": "order-1", "status": "accepted",
                                    "at": "2026-12-01T12:00:00+00:00"}


def test_a_rejected_orr_o02_carries_its_reason_from_orc_16_or_nte() -> None:
    answer = domain.read_answer(domain.parse(fp.order_response(
        "order-1", accepted=False, control_id="P1", at=AT, reason="Out of stock",
        kind="ORR^O02^ORR_O02")))
    assert (answer.status, answer.reason) == ("rejected", "Out of stock")
    with_note = fp.order_response("order-1", accepted=False, control_id="P2", at=AT) + \
        "\rNTE|1||Dose above the pharmacy's limit\rNTE|2||call the ward"
    answer = domain.read_answer(domain.parse(with_note))
    assert answer.reason == "Dose above the pharmacy's limit call the ward"


def test_a_dispense_rds_o13_is_dispatched_with_lot_and_expiry() -> None:
    answer = domain.read_answer(domain.parse(
        fp.dispense("order-1", control_id="P3", at=AT, lot="LOT42", expiry="202612151200-0500")))
    assert (answer.status, answer.lot, answer.at) == ("dispatched", "LOT42", AT)
    assert answer.beyond_use_at == datetime(2026, 12, 15, 17, 0, tzinfo=UTC)


def test_the_status_event_id_is_the_same_for_the_same_message_of_the_same_sender() -> None:
    text = fp.order_response("order-1", accepted=True, control_id="P1", at=AT)
    first, again = (domain.read_answer(domain.parse(text)) for _ in range(2))
    other = domain.read_answer(domain.parse(text.replace("|P1|", "|P2|")))
    assert first.event_id == again.event_id != other.event_id


@pytest.mark.parametrize(("text", "error"), [
    ("", Unparseable),
    ("hello world", Unparseable),
    ("MSH|^~\\&|P|F|H|C|20261201||RRE^O12|P1|P|2.5.1", Unparseable),  # no ORC
    ("MSH|^~\\&|P|F|H|C|20261201||RRE^O12|P1|P|2.5.1\rORC|OK", Unparseable),  # no ORC-2
    ("MSH|^~\\&|P|F|H|C|20261201||RRE^O12||P|2.5.1\rORC|OK|o1", Unparseable),  # no MSH-10
    ("MSH|^~\\&|P|F|H|C|yesterday||RRE^O12|P1|P|2.5.1\rORC|OK|o1", Unparseable),  # bad time
    ("MSH|^~\\&|P|F|H|C|20261201||RDS^O13|P1|P|2.5.1\rORC|RE|o1", Unparseable),  # no RXD
    ("MSH|^~\\&|P|F|H|C|20261201||ADT^A01|P1|P|2.5.1\rORC|OK|o1", Refused),
    ("MSH|^~\\&|P|F|H|C|20261201||RRE^O12|P1|P|2.5.1\rORC|XX|o1", Refused),
])
def test_what_cannot_be_taken_is_ae_or_ar(text: str, error: type[Exception]) -> None:
    with pytest.raises(error) as raised:
        domain.read_answer(domain.parse(text))
    assert raised.value.code == ("AR" if error is Refused else "AE")  # type: ignore[attr-defined]


def test_our_ack_names_the_message_and_reads_back_in_hl7apy() -> None:
    incoming = domain.parse(fp.order_response("order-1", accepted=True, control_id="P1", at=AT))
    ack = domain.ack_message(incoming, "AA", identity=ID, now=NOW)
    assert fp.ack_code(ack) == ("AA", "P1")
    m = parse_message(ack, find_groups=False)
    assert (m.msh.msh_5.value, m.msh.msh_9.to_er7()) == ("PHARMSYS", "ACK^O12^ACK")
    refused = domain.ack_message(None, "AE", identity=ID, now=NOW, text="not HL7 | at all")
    assert fp.ack_code(refused) == ("AE", "")
    assert domain.field(domain.parse(refused), "MSA", 3) == "not HL7 | at all"
    assert domain.field(domain.parse(refused), "ERR", 4) == "E"


@pytest.mark.parametrize("code", ["AA", "AE", "AR"])
def test_the_pharmacys_ack_is_read(code: str) -> None:
    ack = domain.parse_ack(fp.ack_for("N123", code, "" if code == "AA" else "why"))
    assert (ack.code, ack.acknowledged_id, ack.error_code) == (code, "N123", "" if code == "AA" else "207")


def test_a_reply_without_msa_is_not_an_ack() -> None:
    with pytest.raises(Unparseable):
        domain.parse_ack("MSH|^~\\&|P|F|H|C|20261201||ACK|X|P|2.5.1")


@pytest.mark.parametrize(("text", "expected"), [
    ("20261201", datetime(2026, 12, 1, tzinfo=UTC)),
    ("202612011230", datetime(2026, 12, 1, 12, 30, tzinfo=UTC)),
    ("20261201123045.123+0100", datetime(2026, 12, 1, 11, 30, 45, tzinfo=UTC)),
])
def test_hl7_times(text: str, expected: datetime) -> None:
    assert domain.parse_ts(text) == expected
