"""HL7 v2.5.1 for the pharmacy: the RDE^O11 of an order, the pharmacy's answers (ORR^O02,
RRE^O12, RDS^O13) as order statuses, and the ACKs both ways. Plain functions on text: no
sockets, no database (CONTRACT.md, HL7 v2 bridge)."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal

import hl7

from shared.contracts.pharmacy import OrderRequestedData, OrderStatus
from shared.contracts.vocabulary import DeliveryStatus

VERSION = "2.5.1"
ENCODING = "utf-8"
CHARSET = "UNICODE UTF-8"  # MSH-18 (HL7 table 0211)
LOCAL_CODES = "99HAI"  # the centre's local coding system (HL7: 99zzz)
UCUM = "UCUM"
# the payload's units, as UCUM codes (CONTRACT.md: heparin comes in `units`, international units)
UCUM_UNITS = {"mg": ("mg", "milligram"), "units": ("[iU]", "international unit"),
              "mL": ("mL", "milliliter")}
DRUG_CODES = {"floxuridine": "FUDR", "dexamethasone": "DEXA", "heparin": "HEP"}
DILUENT_CODE = "NACL09"
OrderControl = Literal["NW", "CA"]
AckCode = Literal["AA", "AE", "AR"]

# a namespace of our own for the status events' ids (uuid5 of the pharmacy's message id)
_EVENT_NAMESPACE = uuid.UUID("5d0f1c3e-8a57-4c1b-9a43-3f1f5a1b2c7e")


@dataclass(frozen=True)
class Identity:
    """Who talks to whom: MSH-3/4 (us) and MSH-5/6 (the pharmacy system)."""

    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str


class Hl7Error(Exception):
    """A message that cannot be taken in; `code` is the ACK to answer it with."""

    code: AckCode = "AE"


class Unparseable(Hl7Error):
    """Not an HL7 v2 message, or one missing what the bridge needs (answered AE)."""

    code: AckCode = "AE"


class Refused(Hl7Error):
    """A well-formed message the bridge will not take: unsupported type, unknown order (AR)."""

    code: AckCode = "AR"


# ---------------------------------------------------------------- text

_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"))


def escape(value: object) -> str:
    """A value as HL7 field text: the delimiters escaped, line breaks as `\\.br\\`."""
    text = "" if value is None else str(value)
    for raw, escaped in _ESCAPES:
        text = text.replace(raw, escaped)
    return re.sub(r"\r\n|\r|\n", r"\\.br\\", text)


def ts(at: datetime) -> str:
    """An HL7 DTM in UTC with its offset, to the second."""
    if at.tzinfo is None:
        raise ValueError("naive datetime refused: HL7 times are sent with their offset")
    return at.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


_DTM = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d{1,4})?([+-]\d{4})?$")


def parse_ts(value: str, where: str = "") -> datetime:
    """An HL7 DTM (`YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+/-ZZZZ]`) as an aware UTC datetime; without
    an offset it is taken as UTC. Raises Unparseable naming `where`, never the value (it is
    logged, and a misplaced field may hold anything)."""
    m = _DTM.match(value.strip())
    if not m:
        raise Unparseable(f"not an HL7 date/time in {where or 'a time field'}")
    year, month, day, hour, minute, second, offset = m.groups()
    tz = UTC
    if offset:
        sign = 1 if offset[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
    try:
        at = datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
                      int(second or 0), tzinfo=tz)
    except ValueError as exc:
        raise Unparseable(f"not an HL7 date/time in {where or 'a time field'}") from exc
    return at.astimezone(UTC)


def num(value: float) -> str:
    """A number as HL7 NM text: no exponent, no trailing zeros."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


# ---------------------------------------------------------------- orders out

def control_id(order_id: str, order_control: OrderControl) -> str:
    """MSH-10 of an order's RDE^O11: the same on every retry (so the pharmacy can recognise a
    resend), a different one for its cancellation; 20 characters (v2.5.1's MSH-10 length)."""
    digest = hashlib.sha256(f"{order_id}|{order_control}".encode()).hexdigest()
    return f"{order_control[0]}{digest[:19]}"


def _segment(*fields: str) -> str:
    return "|".join(fields).rstrip("|")


def _msh(identity: Identity, *, message_type: str, control: str, now: datetime) -> str:
    return "MSH|^~\\&|" + _segment(
        escape(identity.sending_application), escape(identity.sending_facility),
        escape(identity.receiving_application), escape(identity.receiving_facility),
        ts(now), "", message_type, escape(control), "P", VERSION,
        "", "", "", "", "", "", CHARSET)


def order_message(order: OrderRequestedData, *, order_control: OrderControl, identity: Identity,
                  now: datetime) -> str:
    """The RDE^O11 (v2.5.1) of an order (ORC-1 `NW`) or of its cancellation (`CA`): PID, PV1,
    ORC, RXE, TQ1, RXR, one RXC per component (the drugs, then the saline diluent), and the
    dosing weight as an OBX. Segments end with a carriage return."""
    p, pump = order.patient, order.pump
    fudr = next((d for d in order.drugs if d.code == "floxuridine"), None)
    placer = f"{escape(order.order_id)}^{escape(identity.sending_application)}"
    segments = [
        _msh(identity, message_type="RDE^O11^RDE_O11", control=control_id(order.order_id, order_control),
             now=now),
        # PID-3 the MRN (the pharmacy needs it; it never goes into a log), PID-5, PID-7
        _segment("PID", "1", "", f"{escape(p.mrn)}^^^{escape(identity.sending_facility)}^MR", "",
                 f"{escape(p.family_name)}^{escape(p.given_name)}", "", p.birth_date.strftime("%Y%m%d")),
        _segment("PV1", "1", "O"),
        # ORC-2 placer order number = the order id; ORC-9 when
        _segment("ORC", order_control, placer, "", "", "", "", "", "", ts(now)),
        _segment(
            "RXE", "",
            # RXE-2 give code, RXE-3 give amount, RXE-5 units, RXE-6 dosage form
            f"{DRUG_CODES['floxuridine']}^Floxuridine^{LOCAL_CODES}",
            num(fudr.amount) if fudr else "", "", _ce_unit(fudr.unit if fudr else "mg"),
            "SOL^solution^HL70906",
            # RXE-7 the administration instructions
            f"^{escape(_instructions(order))}",
            "", "",
            # RXE-10/11 dispense amount and units: the fill volume
            num(order.fill_volume_ml), _ce_unit("mL"),
            "", "", "", "", "", "", "", "", "", "", "",
            # RXE-23/24 give rate amount and units: the pump's flow
            num(pump.flow_ml_per_day), "mL/d^milliliter per day^UCUM"),
        # TQ1-7 start date/time: the order is needed by then
        _segment("TQ1", "1", "", "", "", "", "", ts(order.needed_by)),
        # RXR-1 route intra-arterial (HL7 table 0162), RXR-2 site, RXR-3 device
        _segment("RXR", "IA^Intra-arterial^HL70162", "^Hepatic artery",
                 f"^{escape(f'Implanted HAI pump {pump.model_code} {pump.serial_number}')}"),
    ]
    for drug in order.drugs:
        # RXC-1 A = additive, RXC-2 component, RXC-3 amount, RXC-4 units
        segments.append(_segment("RXC", "A", f"{DRUG_CODES[drug.code]}^{escape(drug.name)}^{LOCAL_CODES}",
                                 num(drug.amount), _ce_unit(drug.unit)))
    # RXC-1 B = the base: 0.9 % sodium chloride to the fill volume (CONTRACT.md: `diluent`)
    segments.append(_segment("RXC", "B", f"{DILUENT_CODE}^{escape(order.diluent)}^{LOCAL_CODES}",
                             num(order.fill_volume_ml), _ce_unit("mL")))
    segments.append(_segment("OBX", "1", "NM", "29463-7^Body weight^LN", "",
                             num(p.weight_kg), "kg^kilogram^UCUM", "", "", "", "", "F"))
    return "\r".join(segments) + "\r"


def _ce_unit(unit: str) -> str:
    code, text = UCUM_UNITS[unit]
    return f"{escape(code)}^{text}^{UCUM}"


def _instructions(order: OrderRequestedData) -> str:
    return (f"Fill implanted HAI pump {order.pump.serial_number}: {num(order.fill_volume_ml)} mL "
            f"for {num(order.infusion_days)} days at {num(order.pump.flow_ml_per_day)} mL/day. "
            + "; ".join(f"{d.name}: {d.basis}" for d in order.drugs))


# ---------------------------------------------------------------- ACKs

@dataclass(frozen=True)
class Ack:
    """What an ACK said: MSA-1, MSA-2 (the control id acknowledged), and the HL7 error code of
    ERR-3 (table 0357), if any. The ACK's free text (MSA-3, ERR-8) is not kept: it may name the
    patient, and what the bridge keeps of an ACK ends up in a dead letter's reason and a log."""

    code: str
    acknowledged_id: str
    error_code: str


def parse(text: str) -> hl7.Message:
    """An HL7 v2 message (segments separated by CR, LF or CRLF), or Unparseable."""
    normalised = re.sub(r"\r\n|\n", "\r", text).strip("\r\x00 \t")
    if not normalised.startswith("MSH") or len(normalised) < 8:
        raise Unparseable("not an HL7 v2 message (no MSH segment first)")
    try:
        return hl7.parse(normalised)
    except Exception as exc:  # noqa: BLE001 - the parser's many ways to fail, one answer
        raise Unparseable(f"not an HL7 v2 message ({type(exc).__name__})") from exc


def field(message: hl7.Message, segment: str, index: int, component: int = 1,
          repetition: int = 1, occurrence: int = 1) -> str:
    """One component's text, unescaped; "" when absent."""
    try:
        value = message.extract_field(segment, occurrence, index, repetition, component)
    except (IndexError, KeyError):
        return ""
    return str(value or "")


def parse_ack(text: str) -> Ack:
    """The pharmacy's ACK to our message, or Unparseable."""
    message = parse(text)
    code = field(message, "MSA", 1)
    if code not in ("AA", "AE", "AR", "CA", "CE", "CR"):
        raise Unparseable("no acknowledgment code in MSA-1")
    error_code = field(message, "ERR", 3)
    return Ack(code=code, acknowledged_id=field(message, "MSA", 2),
               error_code=error_code if error_code.isdigit() else "")


def ack_message(incoming: hl7.Message | None, code: AckCode, *, identity: Identity, now: datetime,
                text: str = "") -> str:
    """Our ACK to a message of the pharmacy (to whatever could be read of it: MSA-2 is empty
    when its control id could not be read)."""
    acknowledged = field(incoming, "MSH", 10) if incoming is not None else ""
    trigger = field(incoming, "MSH", 9, 2) if incoming is not None else ""
    receiving_app = (field(incoming, "MSH", 3) if incoming is not None else "") \
        or identity.receiving_application
    receiving_fac = (field(incoming, "MSH", 4) if incoming is not None else "") \
        or identity.receiving_facility
    ours = Identity(identity.sending_application, identity.sending_facility, receiving_app,
                    receiving_fac)
    own_id = "A" + hashlib.sha256(f"{acknowledged}|{now.isoformat()}|{code}".encode()).hexdigest()[:19]
    segments = [
        _msh(ours, message_type=f"ACK^{escape(trigger)}^ACK" if trigger else "ACK",
             control=own_id, now=now),
        _segment("MSA", code, escape(acknowledged), escape(text[:80])),
    ]
    if code != "AA":
        # ERR-3 HL7 error code (table 0357: 207 application internal error / 100 segment
        # sequence error), ERR-4 severity E
        err = "207^Application internal error^HL70357" if code == "AR" \
            else "100^Segment sequence error^HL70357"
        segments.append(_segment("ERR", "", "", err, "E", "", "", "", escape(text[:200])))
    return "\r".join(segments) + "\r"


# ---------------------------------------------------------------- answers in

ANSWER_TYPES = ("ORR^O02", "RRE^O12", "RDS^O13")


@dataclass(frozen=True)
class Answer:
    """A pharmacy's answer, as the order status it means (CONTRACT.md, Pharmacy queue)."""

    sender: str
    control_id: str
    message_type: str
    order_id: str
    status: OrderStatus
    at: datetime
    reason: str | None = None
    lot: str | None = None
    beyond_use_at: datetime | None = None

    @property
    def event_id(self) -> str:
        """The status event's id: the same for the same message of the same sender, so a
        resent answer is one event (scheduling's inbox drops the second)."""
        return str(uuid.uuid5(_EVENT_NAMESPACE, f"{self.sender}|{self.control_id}"))

    def status_data(self) -> dict[str, object]:
        """`hai.pharmacy.order.status` data, as the JSON pharmacy would publish it."""
        data: dict[str, object] = {"order_id": self.order_id, "status": self.status,
                                   "at": self.at.isoformat()}
        if self.reason:
            data["reason"] = self.reason
        if self.lot:
            data["lot"] = self.lot
        if self.beyond_use_at:
            data["beyond_use_at"] = self.beyond_use_at.isoformat()
        return data


def read_answer(message: hl7.Message) -> Answer:
    """The order status a parsed ORR^O02 / RRE^O12 (ORC-1 OK accepted, UA rejected) or
    RDS^O13 (dispatched, lot RXD-18, expiry RXD-19) means. Raises Unparseable (AE) when what
    is needed is missing, Refused (AR) for a message type or order control we do not take."""
    kind = f"{field(message, 'MSH', 9, 1)}^{field(message, 'MSH', 9, 2)}"
    control = field(message, "MSH", 10)
    if not control:
        raise Unparseable("no message control id (MSH-10)")
    if kind not in ANSWER_TYPES:
        raise Refused(f"unsupported message type {kind[:20]}")  # MSH-9: codes, not data
    try:
        message.segment("ORC")
    except KeyError as exc:
        raise Unparseable(f"{kind} without ORC") from exc
    order_id = field(message, "ORC", 2)
    if not order_id:
        raise Unparseable(f"{kind} without a placer order number (ORC-2)")
    sender = f"{field(message, 'MSH', 3)}^{field(message, 'MSH', 4)}"
    at_field, at_text = next(((name, value) for name, value in (
        ("RXD-3", field(message, "RXD", 3) if kind == "RDS^O13" else ""),
        ("ORC-9", field(message, "ORC", 9)), ("MSH-7", field(message, "MSH", 7))) if value),
        ("", ""))
    if not at_text:
        raise Unparseable(f"{kind} without a date/time (ORC-9 / MSH-7)")
    at = parse_ts(at_text, at_field)
    if kind == "RDS^O13":
        try:
            message.segment("RXD")
        except KeyError as exc:
            raise Unparseable("RDS^O13 without RXD") from exc
        expiry = field(message, "RXD", 19)
        return Answer(sender=sender, control_id=control, message_type=kind, order_id=order_id,
                      status=DeliveryStatus.DISPATCHED, at=at, lot=field(message, "RXD", 18) or None,
                      beyond_use_at=parse_ts(expiry, "RXD-19") if expiry else None)
    order_control = field(message, "ORC", 1)
    if order_control == "OK":
        return Answer(sender=sender, control_id=control, message_type=kind, order_id=order_id,
                      status=DeliveryStatus.ACCEPTED, at=at)
    if order_control == "UA":
        reason = (field(message, "ORC", 16, 2) or field(message, "ORC", 16, 1)
                  or _notes(message) or "rejected by the pharmacy (no reason given)")
        return Answer(sender=sender, control_id=control, message_type=kind, order_id=order_id,
                      status=DeliveryStatus.REJECTED, at=at, reason=reason)
    raise Refused(f"unsupported order control {order_control[:4]!r} in {kind}")


def _notes(message: hl7.Message) -> str:
    try:
        notes = message.segments("NTE")
    except KeyError:
        return ""
    texts = []
    for i in range(1, len(notes) + 1):
        text = field(message, "NTE", 3, occurrence=i)
        if text:
            texts.append(text)
    return " ".join(texts)
