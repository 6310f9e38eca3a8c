"""The text every service accepts: one set of rules for every string of a body, a query or a path.

No string may carry NUL (PostgreSQL refuses it, SQLite stores it) or a lone surrogate (it cannot
be encoded to UTF-8); single-line text carries no control character at all. Identifiers (MRNs,
serial numbers, lots, centres) must also come back in a URL path: no `/`, `\\` or `%`, no leading
dot, no surrounding spaces. Each refusal is a 422 naming the field, in plain words.

The types are `Annotated[str, StringConstraints(...), text_rules(...)]`: the rules run first
(on the raw input, and trim it), then the length and pattern, which the OpenAPI also shows.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, StringConstraints
from pydantic_core import PydanticCustomError

# kept inside multi-line free text (notes, reasons); every other control character is refused
LINE_BREAKS = frozenset("\t\n\r")
GS = "\x1d"  # the GS1 field separator a scanner puts between a UDI's elements

IdentifierKind = Literal["code", "centre"]


def text_problem(value: str, *, keep: frozenset[str] = frozenset()) -> str | None:
    """Why `value` is not acceptable text, or None: NUL, a lone surrogate, or a control
    character other than those in `keep`."""
    for char in value:
        if char == "\x00":
            return "must not contain the NUL character"
        if "\ud800" <= char <= "\udfff":
            return "must be valid Unicode text (it contains a lone surrogate)"
        if char not in keep and unicodedata.category(char) == "Cc":
            return "must not contain control characters (such as tabs or line breaks)"
    return None


def identifier_problem(value: str, kind: IdentifierKind) -> str | None:
    """Why `value` (clean, trimmed text) cannot be an identifier read back in a URL path, or
    None. A `code` (MRN, serial, lot) is printable ASCII without spaces; a `centre` may hold
    letters beyond ASCII and inner spaces."""
    if "/" in value or "\\" in value or "%" in value:
        # '%': a path decoded once too often (a proxy, a test client) turns %2F into '/'
        return "must not contain '/', '\\' or '%'"
    if value.startswith("."):
        return "must not start with a dot"
    if kind == "code":
        if not all("!" <= c <= "~" for c in value):
            return "must contain only letters, digits and punctuation, without spaces"
    elif any(unicodedata.category(c)[0] in "CZ" and c != " " for c in value):
        return "must contain only printable characters"
    return None


def text_rules(*, keep: frozenset[str] = frozenset(), strip: bool = True,
               not_blank: bool = True, identifier: IdentifierKind | None = None) -> BeforeValidator:
    """The validator that applies these rules to a string field (anything else passes on to
    the str schema, which refuses it)."""
    def check(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        problem = text_problem(value, keep=keep)
        if problem:
            raise PydanticCustomError("text_invalid", problem)
        if strip:
            value = value.strip()
        if not_blank and not value:
            raise PydanticCustomError("text_blank", "must not be blank")
        if identifier is not None and value:
            problem = identifier_problem(value, identifier)
            if problem:
                raise PydanticCustomError("identifier_invalid", problem)
        return value
    return BeforeValidator(check)


# ECMA patterns for the OpenAPI (fuzzers generate from them); the rules above are the authority
# and are never looser, so a value the rules accept always matches
CODE_PATTERN = r"^[\x21-\x24\x26-\x2d\x30-\x5b\x5d-\x7e][\x21-\x24\x26-\x2e\x30-\x5b\x5d-\x7e]*$"
CENTRE_PATTERN = r"^[^\x00-\x20\x7f%./\\][^\x00-\x1f\x7f%/\\]*$"
LINE_PATTERN = r"^[^\x00-\x1f\x7f]*$"

LINE_RULES = text_rules()
PARAGRAPH_RULES = text_rules(keep=LINE_BREAKS)
CODE_RULES = text_rules(identifier="code")
CENTRE_RULES = text_rules(identifier="centre")
KEY_RULES = text_rules(strip=False, not_blank=False)

# An identifier people read and type (MRN, serial number, lot number): 1–64 characters of
# printable ASCII without spaces, '/', '\' or '%', not starting with a dot.
Code = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=CODE_PATTERN),
                 CODE_RULES]
# A pump model's code: the same, at most 50 characters.
ModelCode = Annotated[str, StringConstraints(min_length=1, max_length=50, pattern=CODE_PATTERN),
                      CODE_RULES]
# A centre: 1–100 printable characters (inner spaces allowed), no '/', '\' or '%', no leading
# dot.
Centre = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=CENTRE_PATTERN),
                   CENTRE_RULES]
# A name or short label on one line (a person, a manufacturer, a location): 1–200 characters.
Line = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=LINE_PATTERN),
                 LINE_RULES]
# Free text (a reason, a note): line breaks and tabs allowed, 1–2,000 characters.
Paragraph = Annotated[str, StringConstraints(min_length=1, max_length=2000), PARAGRAPH_RULES]
# A value looked up rather than stored (a path or query parameter, an id): NUL, lone surrogates
# and control characters refused, nothing more, so rows written under older rules stay reachable.
Key = Annotated[str, StringConstraints(max_length=200), KEY_RULES]


def code_problem(value: str) -> str | None:
    """Why `value` cannot be stored as a Code (for codes parsed out of other text, e.g. a
    UDI's serial and lot), or None."""
    if not value:
        return "must not be blank"
    if len(value) > 64:
        return "must be at most 64 characters"
    return text_problem(value) or identifier_problem(value, "code")
