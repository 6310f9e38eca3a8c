"""Walk a service's OpenAPI: its operations, their parameters, and every string and number a
request body can carry, with a schema-valid body to carry them in (the hostile input tests)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

Path = tuple[str | int, ...]
# values tried in turn for a string with a pattern; the first that matches is used
_PATTERN_CANDIDATES = ["X-1", "00812345000016", "north", "2026-11-01"]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    parameters: list[dict[str, Any]]
    body: dict[str, Any] | None  # the JSON schema of the request body, $refs unresolved


def operations(spec: dict[str, Any], prefixes: tuple[str, ...] = ("/v1",)) -> list[Operation]:
    """Every operation of the document under those prefixes (/v1 by default)."""
    out = []
    for path, item in spec["paths"].items():
        if not path.startswith(prefixes):
            continue
        for method, op in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            content = op.get("requestBody", {}).get("content", {})
            body = content.get("application/json", {}).get("schema")
            out.append(Operation(method.upper(), path, op.get("parameters", []), body))
    return out


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The schema a $ref names (followed until it is not a $ref)."""
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def _choices(spec: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    schema = resolve(spec, schema)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return [resolve(spec, s) for s in schema[key] if resolve(spec, s).get("type") != "null"]
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _choices(spec, schema["allOf"][0])
    return [schema]


def leaves(spec: dict[str, Any], schema: dict[str, Any],
           path: Path = ()) -> Iterator[tuple[Path, str, dict[str, Any]]]:
    """(path, kind, schema) of every string, number and integer a body may hold (each list's
    first item stands for its items)."""
    for choice in _choices(spec, schema):
        kind = choice.get("type")
        if kind == "object":
            for name, sub in choice.get("properties", {}).items():
                yield from leaves(spec, sub, (*path, name))
        elif kind == "array":
            yield from leaves(spec, choice["items"], (*path, 0))
        elif kind in ("string", "number", "integer"):
            yield path, kind, choice
        if kind in ("object", "array", "string", "number", "integer"):
            return  # the first non-null choice is the one the base body takes


def example(spec: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A value valid for the schema's own constraints (every optional property included)."""
    choice = _choices(spec, schema)[0]
    if "enum" in choice:
        return choice["enum"][0]
    if "const" in choice:
        return choice["const"]
    kind = choice.get("type")
    if kind == "object":
        return {name: example(spec, sub) for name, sub in choice.get("properties", {}).items()}
    if kind == "array":
        return [example(spec, choice["items"])]
    if kind == "boolean":
        return False
    if kind in ("number", "integer"):
        low = choice.get("minimum", choice.get("exclusiveMinimum", 0))
        high = choice.get("maximum", choice.get("exclusiveMaximum", low + 2))
        value = 1 if low < 1 < high else (low + high) / 2
        return int(value) if kind == "integer" and low < int(value) < high else value
    if kind == "string":
        fmt = choice.get("format")
        if fmt == "date":
            return "2026-11-01"
        if fmt == "date-time":
            return "2026-11-01T08:00:00Z"
        pattern = choice.get("pattern")
        if pattern:
            return next((c for c in _PATTERN_CANDIDATES if re.search(pattern, c)), "X-1")
        return "X-1"
    return None


def with_value(body: Any, path: Path, value: Any) -> Any:
    """A copy of `body` with `value` at `path` (made where missing)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        items = list(body) if isinstance(body, list) else []
        while len(items) <= head:
            items.append({})
        items[head] = with_value(items[head], rest, value)
        return items
    out = dict(body) if isinstance(body, dict) else {}
    out[head] = with_value(out.get(head, {}), rest, value)
    return out


def field_name(path: Path) -> str:
    """The `field` a 422 names for a body path (as shared/errors.py writes it)."""
    return ".".join(str(p) for p in path)


def concrete(path: str, values: dict[str, str] | None = None, default: str = "X-1") -> str:
    """The path with each {param} replaced (its value from `values`, else `default`)."""
    values = values or {}
    return re.sub(r"\{([^}]+)\}", lambda m: values.get(m.group(1), default), path)


def is_kind(spec: dict[str, Any], schema: dict[str, Any], kind: str) -> bool:
    """True when the parameter or property accepts a value of this JSON type."""
    return any(c.get("type") == kind for c in _choices(spec, schema))
