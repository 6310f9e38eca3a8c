"""Cursor pagination for every list: `?limit=&cursor=` → `{items, next_cursor}`."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel
from sqlalchemy import Select, tuple_
from sqlalchemy.orm import Session

from shared.errors import Invalid

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class PageParams(BaseModel):
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


async def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="page size")] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=1000, description="opaque cursor")] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor)


PageDep = Annotated[PageParams, Depends(page_params)]


def encode_cursor(values: Sequence[Any]) -> str:
    """An opaque cursor from the last row's key values."""
    tagged = [{"t": v.isoformat()} if isinstance(v, datetime) else {"v": v} for v in values]
    return base64.urlsafe_b64encode(json.dumps(tagged).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    """The key values of a cursor; 422 when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        tagged = json.loads(raw)
        values = [datetime.fromisoformat(t["t"]) if "t" in t else t["v"] for t in tagged]
    except (ValueError, TypeError, KeyError) as exc:
        raise Invalid("cursor", "not a valid cursor") from exc
    if len(values) != arity:
        raise Invalid("cursor", "not a valid cursor for this list")
    return values


def paginate(
    session: Session,
    stmt: Select[Any],
    *,
    keys: Sequence[Any],
    params: PageParams,
    to_item: Callable[[Any], T],
    descending: bool = False,
    scalars: bool = True,
) -> Page[T]:
    """Keyset pagination over `keys` (unique together), ascending or descending."""
    if params.cursor:
        values = decode_cursor(params.cursor, len(keys))
        row_key = tuple_(*keys)
        stmt = stmt.where(row_key < tuple_(*values) if descending else row_key > tuple_(*values))
    order = [k.desc() for k in keys] if descending else list(keys)
    stmt = stmt.order_by(*order).limit(params.limit + 1)
    result = session.execute(stmt)
    rows = list(result.scalars() if scalars else result)
    more = len(rows) > params.limit
    rows = rows[: params.limit]
    next_cursor = None
    if more and rows:
        last = rows[-1]
        next_cursor = encode_cursor([_key_value(last, k) for k in keys])
    return Page[T](items=[to_item(r) for r in rows], next_cursor=next_cursor)


def _key_value(row: Any, key: Any) -> Any:
    name = getattr(key, "key", None) or getattr(key, "name", None)
    value = getattr(row, str(name))
    return value


def page_of(items: Sequence[T], params: PageParams, key: Callable[[T], Any]) -> Page[T]:
    """Paginate an in-memory, already ordered list (small lists such as a timeline)."""
    start = 0
    if params.cursor:
        (after,) = decode_cursor(params.cursor, 1)
        start = next((i + 1 for i, it in enumerate(items) if key(it) == after), len(items))
    window = list(items[start: start + params.limit])
    more = start + params.limit < len(items)
    return Page[T](items=window,
                   next_cursor=encode_cursor([key(window[-1])]) if more and window else None)
