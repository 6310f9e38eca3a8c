"""A pharmacy system that speaks HL7 v2, written with hl7apy (the library the bridge does not
use) over real sockets: it takes RDE^O11 orders on an MLLP port of its own (bound to port 0)
and answers each as its script says; it sends its own answers (RRE^O12, ORR^O02, RDS^O13) to
the bridge's listener and reads the bridge's ACK."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hl7apy.core import Message, Segment
from hl7apy.mllp import AbstractHandler, MLLPServer
from hl7apy.parser import parse_message

VERSION = "2.5.1"
SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"


# ---------------------------------------------------------------- what scheduling sends

def order_data(order_id: str, mrn: str = "MRN-7") -> dict[str, Any]:
    """A `pharmacy.orders` payload (CONTRACT.md), delimiters in the family name."""
    return {
        "order_id": order_id, "appointment_id": f"appt-{order_id}",
        "patient": {"mrn": mrn, "given_name": "Ada", "family_name": "O'Lovelace^Byron",
                    "birth_date": "1960-05-01", "weight_kg": 70},
        "pump": {"serial_number": "SN1", "model_code": "INTERA-3000", "reservoir_ml": 30,
                 "flow_ml_per_day": 1.0},
        "fill_volume_ml": 30, "infusion_days": 14,
        "drugs": [
            {"code": "floxuridine", "name": "Floxuridine", "amount": 117.6, "unit": "mg",
             "basis": "0.12 mg/kg/day x 70 kg x 14 d"},
            {"code": "dexamethasone", "name": "Dexamethasone", "amount": 20, "unit": "mg",
             "basis": "20 mg per fill"},
            {"code": "heparin", "name": "Heparin", "amount": 30000, "unit": "units",
             "basis": "1000 units/mL x 30 mL"},
        ],
        "diluent": "0.9% sodium chloride to 30 mL", "needed_by": "2026-12-03T08:00:00+00:00",
    }


# ---------------------------------------------------------------- the pharmacy's side

@dataclass(frozen=True)
class ReceivedOrder:
    """What the pharmacy read in one RDE^O11."""

    control_id: str
    order_control: str
    order_id: str
    mrn: str
    family_name: str
    give_code: str
    route: str
    components: list[tuple[str, str, str, str]]  # (RXC-1 type, code, amount, unit)
    er7: str


def _read(er7: str) -> ReceivedOrder:
    m = parse_message(er7, find_groups=False)
    return ReceivedOrder(
        control_id=m.msh.msh_10.value,
        order_control=m.orc.orc_1.value,
        order_id=m.orc.orc_2.ei_1.value,
        mrn=m.pid.pid_3.cx_1.value,
        family_name=m.pid.pid_5.xpn_1.to_er7(),
        give_code=m.rxe.rxe_2.ce_1.value,
        route=m.rxr.rxr_1.ce_1.value,
        components=[(r.rxc_1.value, r.rxc_2.ce_1.value, r.rxc_3.value, r.rxc_4.ce_1.value)
                    for r in m.rxc],
        er7=er7,
    )


def ack_for(control_id: str, code: str, text: str = "") -> str:
    ack = Message("ACK", version=VERSION)
    ack.msh.msh_3, ack.msh.msh_4 = "PHARMSYS", "PHARMACY"
    ack.msh.msh_5, ack.msh.msh_6 = "HAI", "HAI-CENTRE"
    ack.msh.msh_9 = "ACK^O11^ACK"
    ack.msh.msh_10 = f"ACK{control_id}"[:20]
    ack.msa.msa_1 = code
    ack.msa.msa_2 = control_id
    if text:
        ack.msa.msa_3 = text
        err = Segment("ERR", version=VERSION)
        err.err_3 = "207^Application internal error^HL70357"
        err.err_4 = "E"
        err.err_8 = text
        return "\r".join([ack.to_er7(), err.to_er7()])
    return ack.to_er7()


class _RdeHandler(AbstractHandler):
    def __init__(self, message: str, pharmacy: FakePharmacy) -> None:
        super().__init__(message)
        self.pharmacy = pharmacy

    def reply(self) -> str:
        order = _read(self.incoming_message)
        with self.pharmacy.lock:
            self.pharmacy.received.append(order)
            step = self.pharmacy.script.pop(0) if self.pharmacy.script else "AA"
        if step == "silent":  # never answers: the bridge must time out
            self.pharmacy.release.wait(60)
            raise ConnectionAbortedError("the pharmacy hung up without answering")
        text = "" if step == "AA" else f"drug catalogue unavailable for {order.mrn}"
        return (SB + ack_for(order.control_id, step, text).encode() + EB + CR).decode()


class FakePharmacy:
    """The pharmacy system; `script` is its reply to each RDE^O11 in turn (AA, AE, AR or
    silent), AA once the script is used up."""

    def __init__(self, script: list[str] | None = None) -> None:
        self.received: list[ReceivedOrder] = []
        self.script = list(script or [])
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.server = MLLPServer("127.0.0.1", 0, {"RDE^O11^RDE_O11": (_RdeHandler, self)}, timeout=30)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="fake-pharmacy")
        self._thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def orders(self) -> list[ReceivedOrder]:
        with self.lock:
            return list(self.received)


# ---------------------------------------------------------------- the pharmacy's answers

def _msh(message_type: str, control_id: str) -> str:
    msh = Segment("MSH", version=VERSION)
    msh.msh_1 = "|"
    msh.msh_2 = "^~\\&"
    msh.msh_3, msh.msh_4 = "PHARMSYS", "PHARMACY"
    msh.msh_5, msh.msh_6 = "HAI", "HAI-CENTRE"
    msh.msh_7 = "20261201120000+0000"
    msh.msh_9 = message_type
    msh.msh_10 = control_id
    msh.msh_11 = "P"
    msh.msh_12 = VERSION
    return msh.to_er7()


def _orc(control: str, order_id: str, at: datetime, reason: str | None = None) -> str:
    orc = Segment("ORC", version=VERSION)
    orc.orc_1 = control
    orc.orc_2 = f"{order_id}^HAI"
    orc.orc_9 = at.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")
    if reason:
        orc.orc_16 = f"OOS^{reason}"
    return orc.to_er7()


def order_response(order_id: str, *, accepted: bool, control_id: str, at: datetime,
                   reason: str | None = None, kind: str = "RRE^O12^RRE_O12") -> str:
    """RRE^O12 (or ORR^O02): ORC-1 OK (accepted) or UA (rejected, the reason in ORC-16)."""
    msa = Segment("MSA", version=VERSION)
    msa.msa_1, msa.msa_2 = "AA", "whatever-we-received"
    return "\r".join([_msh(kind, control_id), msa.to_er7(),
                      _orc("OK" if accepted else "UA", order_id, at, reason)])


def dispense(order_id: str, *, control_id: str, at: datetime, lot: str, expiry: str) -> str:
    """RDS^O13: dispensed, with the lot (RXD-18) and its expiry (RXD-19)."""
    rxd = Segment("RXD", version=VERSION)
    rxd.rxd_1 = "1"
    rxd.rxd_2 = "FUDR^Floxuridine^99HAI"
    rxd.rxd_3 = at.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")
    rxd.rxd_4 = "30"
    rxd.rxd_18 = lot
    rxd.rxd_19 = expiry
    return "\r".join([_msh("RDS^O13^RDS_O13", control_id), _orc("RE", order_id, at), rxd.to_er7()])


def send(port: int, payload: bytes | str, *, frame: bool = True, timeout: float = 15) -> str:
    """Send one block to the bridge's listener, return its reply (the bytes between the MLLP
    framing). `frame=False` sends the payload as it is (broken framing)."""
    data = payload.encode() if isinstance(payload, str) else payload
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(SB + data + EB + CR if frame else data)
        reply = b""
        while not reply.endswith(EB + CR):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(SB) and reply.endswith(EB + CR), reply[:200]
    return reply[1:-2].decode()


def ack_code(reply: str) -> tuple[str, str]:
    """(MSA-1, MSA-2) of the bridge's ACK, read with hl7apy."""
    ack = parse_message(reply.replace("\n", "\r"), find_groups=False)
    return ack.msa.msa_1.value, ack.msa.msa_2.value
