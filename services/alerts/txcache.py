"""Lookups kept for one transaction only: a consumer's batch raises up to 20 alerts, each asking
which silences are in force, and the answer cannot change inside the transaction except through
it. So the answer is kept in the session (`session.info`) until the transaction ends (commit or
rollback), or until the transaction itself writes the table it was read from (an ORM add, change
or delete, or an INSERT/UPDATE/DELETE statement run through the session): then it is read again.
Nothing is kept across transactions: a silence created elsewhere applies to the next one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import event as sa_event
from sqlalchemy.orm import ORMExecuteState, Session

T = TypeVar("T")

_KEY = "alerts.tx_cache"  # {(name): (watched class, value)}
_LISTENING = "alerts.tx_cache_listening"


def cached(session: Session, name: str, watched: type[Any], load: Callable[[], T]) -> T:
    """What `load()` read in this transaction, read once until it ends or writes `watched`."""
    entries: dict[str, tuple[type[Any], Any]] = session.info.setdefault(_KEY, {})
    hit = entries.get(name)
    if hit is not None:
        return hit[1]
    value = load()
    entries[name] = (watched, value)
    if not session.info.get(_LISTENING):
        session.info[_LISTENING] = True
        _listen(session)
    return value


def peek(session: Session, name: str) -> Any:
    """What the transaction keeps under `name` (`cached` or `keep`), or None."""
    hit = session.info.get(_KEY, {}).get(name)
    return None if hit is None else hit[1]


def keep(session: Session, name: str, watched: type[Any], value: Any) -> None:
    """Keep `value` under `name` until the transaction ends or writes `watched`."""
    session.info.setdefault(_KEY, {}).pop(name, None)
    cached(session, name, watched, lambda: value)


def forget(session: Session, classes: Callable[[type[Any]], bool] | None = None) -> None:
    """Drop the transaction's lookups (those of the classes `classes` accepts, when given)."""
    entries = session.info.get(_KEY)
    if not entries:
        return
    if classes is None:
        entries.clear()
        return
    for name in [n for n, (watched, _) in entries.items() if classes(watched)]:
        del entries[name]


def _watched_in(objects: Any) -> Callable[[type[Any]], bool]:
    written = {type(o) for o in objects}
    return lambda watched: any(issubclass(c, watched) for c in written)


def _listen(session: Session) -> None:
    def ended(s: Session, *_: Any) -> None:
        forget(s)

    def added(s: Session, instance: Any) -> None:
        forget(s, _watched_in([instance]))

    def flushing(s: Session, *_: Any) -> None:
        forget(s, _watched_in([*s.new, *s.dirty, *s.deleted]))

    def executing(state: ORMExecuteState) -> None:
        if state.is_insert or state.is_update or state.is_delete:
            table = getattr(getattr(state.statement, "table", None), "name", None)
            forget(state.session, lambda watched: watched.__table__.name == table)

    for name in ("after_commit", "after_rollback", "after_soft_rollback"):
        sa_event.listen(session, name, ended)
    sa_event.listen(session, "transient_to_pending", added)
    sa_event.listen(session, "before_flush", flushing)
    sa_event.listen(session, "do_orm_execute", executing)
