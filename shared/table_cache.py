"""A small table kept in memory per database, reloaded when it may have changed: at once after
this process commits a change to it, and at most `ttl_seconds` after another process did (the
centres' settings: read on every judgement, changed by an admin now and then, no restart)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from weakref import WeakKeyDictionary

from pydantic import BaseModel
from sqlalchemy import Engine
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from shared.scoping import unscoped

T = TypeVar("T")


class TableCache(Generic[T]):
    """What `load(session)` read, per engine, for up to `ttl_seconds`."""

    def __init__(self, load: Callable[[Session], T]) -> None:
        self._load = load
        self._loaded: WeakKeyDictionary[Engine, tuple[float, T]] = WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, session: Session, ttl_seconds: float) -> T:
        """The cached value of the session's database, reloaded in this session when stale
        (always whole: a request's centre scope is lifted while it loads)."""
        engine = _engine(session)
        with self._lock:
            current = self._loaded.get(engine)
        if current is not None and time.monotonic() - current[0] < ttl_seconds:
            return current[1]
        with unscoped(session):
            value = self._load(session)
        with self._lock:
            self._loaded[engine] = (time.monotonic(), value)
        return value

    def invalidate(self, engine: Engine) -> None:
        """Forget the engine's value: the next `get` reloads it."""
        with self._lock:
            self._loaded.pop(engine, None)

    def invalidate_after_commit(self, session: Session) -> None:
        """Forget the value once this session's transaction commits (a reload before the commit
        would read the old rows again)."""
        engine = _engine(session)
        sa_event.listen(session, "after_commit", lambda _s: self.invalidate(engine), once=True)


def _engine(session: Session) -> Engine:
    bind = session.get_bind()
    return bind if isinstance(bind, Engine) else bind.engine


S = TypeVar("S", bound=BaseModel)


@dataclass
class CentreValues:
    """Each centre's own values (`centre → {setting: value}`), laid over a service's settings."""

    own: dict[str, dict[str, Any]]
    _applied: dict[tuple[int, str], Any] = field(default_factory=dict)  # S per settings, centre

    def over(self, settings: S, center: str | None) -> S:
        """`settings` with the centre's own values over them (the fields the settings have),
        made once per settings object and centre."""
        if center is None or not self.own.get(center):
            return settings
        own, key = self.own[center], (id(settings), center)
        found = self._applied.get(key)
        if found is None:
            fields = type(settings).model_fields
            found = self._applied[key] = settings.model_copy(
                update={k: v for k, v in own.items() if k in fields})
        return found
