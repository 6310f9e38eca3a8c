"""Cursor pagination for every list: `?limit=&cursor=` → `{items, next_cursor}`.

A cursor is opaque and signed: base64url(JSON of the list it belongs to and the last row's key
values) "." base64url(HMAC-SHA256). A cursor this service did not issue (edited, forged, from
another list, or signed with another key) is a 422 naming `cursor`; and the values of one it
did issue are checked again against the list's key types before they reach the database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, tuple_
from sqlalchemy.orm import Session

from shared.errors import Invalid
from shared.settings import Settings, get_settings
from shared.text import text_problem

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_CURSOR_LENGTH = 1000
NOT_OURS = "not a cursor this list gave out; start again without it"
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_INT64 = 2**63
_CONTROLS = frozenset(chr(c) for c in [*range(1, 32), *range(127, 160)])


class CursorCodec:
    """Signs cursors and checks them: any cursor it did not sign raises Invalid("cursor")."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_settings(cls, settings: Settings) -> CursorCodec:
        """The codec keyed by HAI_CURSOR_SECRET, or by a key derived from HAI_JWT_SECRET."""
        return _codec_for(settings.cursor_secret or settings.jwt_secret)

    def encode(self, values: Sequence[Any], *, list_id: str) -> str:
        """An opaque, signed cursor from the last row's key values."""
        tagged = [{"t": v.isoformat()} if isinstance(v, datetime) else {"v": v} for v in values]
        payload = json.dumps({"l": list_id, "k": tagged}, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def decode(self, cursor: str, *, list_id: str | None = None,
               kinds: Sequence[type | None] | None = None) -> list[Any]:
        """The key values of a cursor this codec signed (for `list_id`, of `kinds` when given)."""
        payload = self._verified(cursor)
        try:
            body = json.loads(payload)
            owner, tagged = body["l"], body["k"]
            if not isinstance(owner, str) or not isinstance(tagged, list):
                raise TypeError("not a cursor body")
            values = [_untag(t) for t in tagged]
        except (ValueError, TypeError, KeyError) as exc:
            raise Invalid("cursor", NOT_OURS) from exc
        if list_id is not None and owner != list_id:
            raise Invalid("cursor", "this cursor belongs to another list")
        if kinds is not None:
            if len(values) != len(kinds):
                raise Invalid("cursor", NOT_OURS)
            for value, kind in zip(values, kinds, strict=True):
                if kind is not None and not _of_kind(value, kind):
                    raise Invalid("cursor", NOT_OURS)
        return values

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def _verified(self, cursor: Any) -> bytes:
        if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_LENGTH:
            raise Invalid("cursor", NOT_OURS)
        payload_part, _, mac_part = cursor.partition(".")
        if not (_B64URL.fullmatch(payload_part) and _B64URL.fullmatch(mac_part)):
            raise Invalid("cursor", NOT_OURS)
        try:
            payload, mac = _unb64(payload_part), _unb64(mac_part)
        except (binascii.Error, ValueError) as exc:
            raise Invalid("cursor", NOT_OURS) from exc
        if _b64(payload) != payload_part or _b64(mac) != mac_part:
            # only the one spelling we give out: base64's unused last bits must not vary
            raise Invalid("cursor", NOT_OURS)
        if not hmac.compare_digest(mac, self._sign(payload)):
            raise Invalid("cursor", NOT_OURS)
        return payload


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _untag(tagged: Any) -> Any:
    if not isinstance(tagged, dict) or len(tagged) != 1:
        raise TypeError("not a tagged value")
    if "t" in tagged:
        if not isinstance(tagged["t"], str):
            raise TypeError("not a timestamp")
        moment = datetime.fromisoformat(tagged["t"])
        if moment.tzinfo is None:
            raise ValueError("a naive timestamp")
        return moment
    value = tagged["v"]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TypeError("not a key value")
    return value


def _of_kind(value: Any, kind: type) -> bool:
    if issubclass(kind, datetime):
        return isinstance(value, datetime)
    if issubclass(kind, bool):
        return False
    if issubclass(kind, int):
        return isinstance(value, int) and -_INT64 <= value < _INT64
    if issubclass(kind, float):
        return isinstance(value, int | float) and math.isfinite(value)
    if issubclass(kind, str):  # what a database can hold: no NUL, no lone surrogate
        return isinstance(value, str) and text_problem(value, keep=_CONTROLS) is None
    return isinstance(value, kind)


@lru_cache(maxsize=8)
def _codec_for(secret: str) -> CursorCodec:
    return CursorCodec(hmac.new(secret.encode(), b"hai pagination cursor v1", hashlib.sha256).digest())


def default_codec() -> CursorCodec:
    """The codec of this process's settings (for pages built outside a request)."""
    return CursorCodec.from_settings(get_settings())


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class PageParams(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    codec: CursorCodec | None = Field(default=None, exclude=True)

    @property
    def cursor_codec(self) -> CursorCodec:
        """The codec that signs and checks this list's cursors."""
        return self.codec or default_codec()


async def page_params(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="page size")] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH,
                                        description="opaque cursor: a list's `next_cursor`")] = None,
) -> PageParams:
    """The page asked for; a cursor this service did not sign is refused here, before any
    lookup (422 naming `cursor`)."""
    runtime = getattr(request.app.state, "runtime", None)
    codec = CursorCodec.from_settings(runtime.settings) if runtime is not None else None
    params = PageParams(limit=limit, cursor=cursor, codec=codec)
    if cursor is not None:
        params.cursor_codec.decode(cursor)
    return params


PageDep = Annotated[PageParams, Depends(page_params)]


def _list_id(keys: Sequence[Any], descending: bool) -> str:
    return ",".join(str(k) for k in keys) + (" desc" if descending else "")


def _kind(key: Any) -> type | None:
    try:
        kind: type = key.type.python_type
    except (AttributeError, NotImplementedError):
        return None
    return kind


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
    codec, list_id = params.cursor_codec, _list_id(keys, descending)
    if params.cursor:
        values = codec.decode(params.cursor, list_id=list_id, kinds=[_kind(k) for k in keys])
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
        next_cursor = codec.encode([_key_value(last, k) for k in keys], list_id=list_id)
    return Page[T](items=[to_item(r) for r in rows], next_cursor=next_cursor)


def _key_value(row: Any, key: Any) -> Any:
    name = getattr(key, "key", None) or getattr(key, "name", None)
    value = getattr(row, str(name))
    return value


def page_of(items: Sequence[T], params: PageParams, key: Callable[[T], Any],
            list_id: str = "in-memory list") -> Page[T]:
    """Paginate an in-memory, already ordered list (small lists such as a timeline)."""
    codec = params.cursor_codec
    start = 0
    if params.cursor:
        kind = type(key(items[0])) if items else None
        (after,) = codec.decode(params.cursor, list_id=list_id, kinds=[kind])
        start = next((i + 1 for i, it in enumerate(items) if key(it) == after), len(items))
    window = list(items[start: start + params.limit])
    more = start + params.limit < len(items)
    return Page[T](items=window, next_cursor=codec.encode([key(window[-1])], list_id=list_id)
                   if more and window else None)
