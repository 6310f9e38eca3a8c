"""The APIs' refusals in plain words, beside the field they name: no validator wording, no
regular expressions, no status codes (pure functions, tested without HTTP)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from services.dashboard.localtime import localize_text

# how a field is called on the forms (the rest: its name with spaces)
FIELD_NAMES = {
    "pump_serial": "the pump serial number", "serial_number": "the serial number",
    "performed_at": "the time of the refill", "residual_volume_ml": "the residual volume",
    "fill_volume_ml": "the fill volume", "fill_type": "the fill type",
    "delivery_id": "the drug order id", "appointment_id": "the appointment",
    "notes": "the notes", "reason": "the reason", "resolution": "the reason",
    "udi": "the UDI", "model_code": "the model", "lot_number": "the lot",
    "lot_numbers": "the lot numbers", "expiry_date": "the expiry date",
    "labeled_flow_ml_per_day": "the labeled flow", "location": "the location",
    "center": "the centre", "note": "the note",
}
_UNITS = {"_ml_per_day": "mL/day", "_ml": "mL", "_mg": "mg", "_kg": "kg", "_pct": "%",
          "_units": "units", "_cm": "cm"}
ACRONYMS = {"id": "ID", "ids": "IDs", "mrn": "MRN", "udi": "UDI", "gtin": "GTIN"}
_SUFFIX_OF = {unit: suffix for suffix, unit in _UNITS.items()}
_BOUND = {
    "greater than or equal to": "{n}{u} or more", "greater than": "more than {n}{u}",
    "less than or equal to": "{n}{u} or less", "less than": "less than {n}{u}",
}
_NUMBER = re.compile(r"^Input should be (greater than or equal to|greater than|less than or equal "
                     r"to|less than) (-?[\d.]+)$")
_LENGTH = re.compile(r"^(?:String|Value) should have at (most|least) (\d+) (?:characters?|items?)")


def field_label(name: str) -> str:
    """What a field is called in a sentence (`residual_volume_ml` → the residual volume)."""
    return FIELD_NAMES.get(name, "the " + name.replace("_", " "))


def label(name: Any) -> str:
    """A data key as a field label: `hours_to_empty` → Hours to empty, `flow_deviation_pct` →
    Flow deviation (%), `appointment_id` → Appointment ID."""
    key = str(name)
    unit = unit_of(key)
    if unit:
        key = key[: key.rindex("_" + _SUFFIX_OF[unit.strip()].lstrip("_"))]
    words = key.replace("_", " ").strip().split(" ")
    words = [ACRONYMS.get(w, w) for w in words]
    text = " ".join(words)
    text = text[:1].upper() + text[1:]
    return f"{text} ({unit.strip()})" if unit else text


def unit_of(name: str) -> str:
    """The unit a field's name carries (` mL`, ` mL/day`), or nothing."""
    for suffix, unit in _UNITS.items():
        if name.endswith(suffix):
            return f" {unit}"
    return ""


def _number(text: str) -> str:
    value = float(text)
    return f"{value:g}"


_API_PATH = re.compile(r"\s*\((?:GET|POST|PUT|PATCH|DELETE) /[^)]*\)")


def plain_message(name: str, message: str, kind: str = "", zone: ZoneInfo | None = None) -> str:
    """One API field error as a sentence a nurse can act on (its timestamps in `zone`)."""
    text = _API_PATH.sub("", (message or "").strip())
    text = re.sub(r"^(Value|Assertion) error,\s*", "", text)
    text = localize_text(text, zone or ZoneInfo("UTC"))
    bound = _NUMBER.match(text)
    if bound:
        return "Enter " + _BOUND[bound.group(1)].format(n=_number(bound.group(2)), u=unit_of(name))
    length = _LENGTH.match(text)
    if length:
        most = length.group(1) == "most"
        return (f"Shorten {field_label(name)} to {length.group(2)} characters or fewer" if most
                else f"{field_label(name).capitalize()} needs at least {length.group(2)} characters")
    if kind == "missing" or text in ("Field required", "field required"):
        return f"Enter {field_label(name)}"
    if "should match pattern" in text or kind == "string_pattern_mismatch":
        return (f"{field_label(name).capitalize()} may hold only letters, digits and simple "
                "punctuation")
    if text.startswith("Input should be a finite number") or kind == "finite_number":
        return "Enter an ordinary number"
    if text.startswith("Input should be a valid number") or kind in ("float_parsing", "int_parsing"):
        return f"Enter a number{unit_of(name) and ' of' + unit_of(name)}"
    if "datetime" in text.lower() or kind.startswith("datetime") or "timezone" in text.lower():
        return "Enter a date and time"
    if kind.startswith("date") or "valid date" in text:
        return "Enter a date"
    if text.startswith("Input should be "):  # an enum: the allowed values follow
        return f"Choose {text.removeprefix('Input should be ')}"
    if text.startswith("Extra inputs are not permitted"):
        return f"{field_label(name).capitalize()} is not asked for here"
    if not text:
        return f"Check {field_label(name)}"
    # the services' own sentences ("must not be blank", "residual above the previous fill")
    if text.startswith("must "):
        text = f"{field_label(name)} {text}"
    return text[0].upper() + text[1:]


def plain_field_errors(errors: Iterable[Mapping[str, Any]],
                       zone: ZoneInfo | None = None) -> dict[str, str]:
    """A 422's `errors` list as {field: sentence} (the last segment of a dotted field)."""
    out: dict[str, str] = {}
    for err in errors:
        name = str(err.get("field", "")).split(".")[-1] or "form"
        if name == "body":
            name = "form"
        sentence = plain_message(name, str(err.get("message", "")), str(err.get("type", "")), zone)
        out[name] = f"{out[name]}; {sentence}" if name in out else sentence
    return out


def plain_unplaced(field_errors: Mapping[str, str]) -> str:
    """Field errors no field of the page shows, as one sentence for its banner."""
    parts = []
    for name, sentence in field_errors.items():
        named = field_label(name).lower() in sentence.lower() or name == "form"
        parts.append(sentence if named else f"{field_label(name)}: {sentence}")
    return "Please check what was entered. " + "; ".join(parts) + "."


_CONFLICT_PREFIXES = re.compile(r"^(conflict|error)\s*:\s*", re.IGNORECASE)


def plain_refusal(service: str, status: int, detail: str) -> str:
    """An API's answer other than a field error, as a sentence (no status code, no jargon)."""
    detail = _CONFLICT_PREFIXES.sub("", (detail or "").strip()).rstrip(".")
    said = f": {detail}" if detail and detail != "no detail" else ""
    if status == 0:
        return f"The {service} service cannot be reached right now; try again in a moment."
    if status == 401:
        return "Your sign-in has expired or was refused; please sign in again."
    if status == 403:
        return "Your role may not do this. Ask a colleague with that role."
    if status == 404:
        return f"Not found{said}."
    if status == 409:
        return f"Not done, because the record changed or is in another state{said}."
    if status == 413:
        return "What was sent is too large."
    if status == 422:
        return f"Please check what was entered{said}."
    if status == 429 or status == 503:
        return f"The {service} service is busy; try again in a moment."
    return f"The {service} service could not do this right now; try again, and call support if it "\
           "keeps failing."
