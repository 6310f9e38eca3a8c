"""The base of every request body: unknown fields and booleans posing as numbers are refused."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


def _allows_bool(annotation: Any) -> bool:
    if annotation is bool:
        return True
    return any(_allows_bool(arg) for arg in get_args(annotation))


class RequestModel(BaseModel):
    """A request body. A misspelt field (`residual_volume` for `residual_volume_ml`) is a 422,
    never silently dropped; `true` is not 1 mL."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name is not None:
            field = cls.model_fields[info.field_name]
            if not _allows_bool(field.annotation):
                raise ValueError("a boolean is not accepted here")
        return value
