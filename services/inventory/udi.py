"""GS1 UDI element strings (AI 01 GTIN, 17 expiry, 10 lot, 21 serial), parsed with biip.

Two forms reach us: the human-readable one with parentheses, `(01)…(17)…(10)…(21)…`, and the
scanner's raw one with GS (0x1D) separators, optionally behind a `]d2`/`]C1`/`]Q3` symbology
prefix (a GS1 Digital Link URI is read too). biip 5.2 reads the raw form with `biip.parse()`
and the parenthesised one with `GS1Message.parse_hri()`; a wrong GTIN check digit does not
raise but leaves `gtin_error`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import biip
from biip import BiipException
from biip.gs1_messages import GS1Message

GS = "\x1d"
AI_GTIN, AI_EXPIRY, AI_LOT, AI_SERIAL = "01", "17", "10", "21"


@dataclass(frozen=True)
class UdiProblem:
    """One thing wrong with a UDI: the field it concerns and why."""

    field: str
    message: str


class UdiError(ValueError):
    """The UDI cannot register a pump; `problems` names each thing wrong."""

    def __init__(self, problems: list[UdiProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class ParsedUdi:
    """What a pump's UDI tells: its GTIN, serial number, lot and expiry date."""

    gtin: str
    serial_number: str
    lot_number: str | None
    expiry_date: date


def parse_udi(text: str) -> ParsedUdi:
    """Parse a GS1 UDI in either form; raise UdiError naming every missing or bad element."""
    message = _parse_message(text)
    elements = {e.ai.ai: e for e in message.element_strings}
    problems: list[UdiProblem] = []

    gtin_value: str | None = None
    gtin_element = elements.get(AI_GTIN)
    if gtin_element is None:
        problems.append(UdiProblem("udi.gtin", "GTIN (AI 01) is missing"))
    elif gtin_element.gtin is None:
        reason = gtin_element.gtin_error or "not a valid GTIN"
        problems.append(UdiProblem("udi.gtin", f"GTIN (AI 01) is invalid: {reason}"))
    else:
        gtin_value = gtin_element.gtin.value.zfill(14)

    serial_element = elements.get(AI_SERIAL)
    serial = serial_element.value.strip() if serial_element is not None else ""
    if not serial:
        problems.append(UdiProblem("udi.serial_number", "serial number (AI 21) is missing"))

    expiry_element = elements.get(AI_EXPIRY)
    expiry: date | None = None
    if expiry_element is None:
        problems.append(UdiProblem("udi.expiry_date", "expiry date (AI 17) is missing"))
    elif expiry_element.date is None:
        problems.append(UdiProblem("udi.expiry_date",
                                   f"expiry date (AI 17) {expiry_element.value!r} is not a date"))
    else:
        expiry = expiry_element.date

    lot_element = elements.get(AI_LOT)
    lot = lot_element.value.strip() if lot_element is not None else None

    if problems or gtin_value is None or expiry is None:
        raise UdiError(problems)
    return ParsedUdi(gtin=gtin_value, serial_number=serial, lot_number=lot or None,
                     expiry_date=expiry)


def _parse_message(text: str) -> GS1Message:
    raw = text.strip()
    if not raw:
        raise UdiError([UdiProblem("udi", "empty UDI")])
    if raw.startswith("("):
        try:
            return GS1Message.parse_hri(raw)
        except BiipException as exc:
            raise UdiError([_explain(str(exc))]) from exc
    result = biip.parse(raw)
    if result.gs1_message is not None:
        return result.gs1_message
    if result.gs1_digital_link_uri is not None:
        return result.gs1_digital_link_uri.as_gs1_message()
    raise UdiError([_explain(result.gs1_message_error or "unreadable")])


def _explain(reason: str) -> UdiProblem:
    if "(17)" in reason:
        return UdiProblem("udi.expiry_date", f"expiry date (AI 17) is not a date: {reason}")
    return UdiProblem("udi", f"not a GS1 element string: {reason}")


def scanned_carrier(text: str | None) -> str | None:
    """The UDI as a scanner gave it (raw element string or Digital Link URI), kept as read for
    FHIR's `carrierAIDC`; None for the parenthesised form, which a person reads and types."""
    if text is None or not text.strip() or text.strip().startswith("("):
        return None
    return text.strip()


def human_readable(gtin: str, expiry: date | None, lot: str | None, serial: str) -> str:
    """The parenthesised (HRI) form of a pump's UDI: `(01)GTIN(17)YYMMDD(10)LOT(21)SERIAL`."""
    parts = [f"({AI_GTIN}){gtin}"]
    if expiry is not None:
        parts.append(f"({AI_EXPIRY}){expiry:%y%m%d}")
    if lot:
        parts.append(f"({AI_LOT}){lot}")
    parts.append(f"({AI_SERIAL}){serial}")
    return "".join(parts)


def check_digit(digits: str) -> int:
    """The GS1 mod-10 check digit of a number without its check digit."""
    total = sum(int(c) * (3 if i % 2 == 0 else 1) for i, c in enumerate(reversed(digits)))
    return (10 - total % 10) % 10


def gtin_is_valid(gtin: str) -> bool:
    """True when the GTIN (8, 12, 13 or 14 digits) has a correct GS1 check digit."""
    if not gtin.isdigit() or len(gtin) not in (8, 12, 13, 14):
        return False
    return check_digit(gtin[:-1]) == int(gtin[-1])
