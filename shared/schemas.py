"""Request input rules shared by every service: unknown fields, booleans posing as numbers,
numbers posing as timestamps, numbers that are not finite and strings with NUL or a lone
surrogate are refused (422 naming the field)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from shared.text import text_problem

_NUMBER = re.compile(r"\s*[-+]?\d+(\.\d*)?([eE][-+]?\d+)?\s*")


def _allows(annotation: Any, kind: type | tuple[type, ...]) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, kind):
        return True
    return any(_allows(arg, kind) for arg in get_args(annotation))


def iso_only(value: Any) -> Any:
    """Refuse a number (or a string of digits) where a date or timestamp is expected: pydantic
    would read it as Unix time, and `due_before=299` is a mistake, not 1970."""
    if isinstance(value, int | float) and not isinstance(value, bool) or (
            isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("expected ISO 8601 (e.g. 2026-11-26T14:00:00Z, or 2026-11-26 for a date)")
    return value


# the span a clinical date or time may take: outside it a value is a typing slip (0001-01-01,
# 9999-12-31), and arithmetic on it (to UTC, + 14 days) would overflow into a 500
EARLIEST = date(1900, 1, 1)
LATEST = date(2199, 12, 31)


def plausible(value: Any) -> Any:
    """Refuse a date or timestamp outside 1900-01-01 … 2199-12-31 (UTC for a timestamp)."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            try:
                day = value.astimezone(UTC).date()
            except OverflowError:
                day = date.min if value.year < 2000 else date.max
        else:
            day = value.date()
    elif isinstance(value, date):
        day = value
    else:
        return value
    if not EARLIEST <= day <= LATEST:
        raise ValueError(f"out of range: must lie between {EARLIEST.isoformat()} and "
                         f"{LATEST.isoformat()}")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(iso_only), AfterValidator(plausible)]
IsoDate = Annotated[date, BeforeValidator(iso_only), AfterValidator(plausible)]


# the backstop below refuses only what no database can hold (a field's own type says the rest,
# down to the item of a list): NUL and lone surrogates
_ANY_CONTROL = frozenset(chr(c) for c in [*range(1, 32), *range(127, 160)])


class RequestModel(BaseModel):
    """A request body. A misspelt field (`residual_volume` for `residual_volume_ml`) is a 422,
    never silently dropped; `true` is not 1 mL; `1764165600` is not a timestamp; `1e309` is
    not a number; NUL is refused in every string, whatever the field's own type."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name is None:
            return value
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, bool) and not _allows(annotation, bool):
            raise ValueError("a boolean is not accepted here")
        problem = text_problem(value, keep=_ANY_CONTROL) if isinstance(value, str) else None
        if problem:
            raise PydanticCustomError("text_invalid", problem)
        if _allows(annotation, (date, AwareDatetime)) and not _allows(annotation, (int, float, str)):
            return iso_only(value)
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _plausible_dates(cls, value: Any) -> Any:
        return plausible(value)
