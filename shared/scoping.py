"""Centre scoping (CONTRACT.md, HTTP conventions): a request sees only its token's centres.

One mechanism per layer, so that no route or service function has to remember it:

- **HTTP.** The token's `centers` claim becomes the principal's centres (`shared.auth`);
  `shared.web.get_uow` scopes the request's unit of work to them (`UnitOfWork.scope_to`), and
  `CentersDep` hands a route the same `CenterScope` for the checks below.
- **SQL.** Each service declares once, beside its models, which centre each scoped table's rows
  belong to (`scope_rows(Model, rule)`; `by_center`, `by_parent`). In a scoped session every
  ORM SELECT of such a model gets `rule(centers)` added (`with_loader_criteria`: in joins,
  subqueries and relationship loads too). A row of another centre is simply absent: a read by
  id answers the very 404 of an id that does not exist, a list or search leaves it out, and a
  write that looks its record up first finds nothing (404).
- **Writes that name a centre** (a new patient's `center`, an implant's, `PUT
  /v1/oncall/{center}`, a silence's matcher): `CenterScope.require(center)` answers 403 when
  the token does not cover it (the caller named it: nothing is disclosed).

Background work (consumers, jobs, the outbox relay) opens units of work without a scope and
sees every centre; so does a token whose claim is `["*"]`.

What the hook does not see: Core statements on a bare `Table` (`Model.__table__`, the platform
tables) and `text()`. A route that reads those filters them itself with
`uow.centers.filter(stmt, table.c.center)`, or refuses a scoped caller
(`uow.centers.require_every(...)`, as the audit trail does). Figures of the whole consortium
(the registry's `*` rows, a report snapshot, a cached table) are read inside
`unscoped(session)` and filtered by `CenterScope.covers` when answered. A new table with a centre (or a
parent that has one) gets its `scope_rows(...)` line beside its model, and
tests/security/test_center_scoping_pg.py then walks its routes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends
from sqlalchemy import ColumnElement, Select, event, false, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute, ORMExecuteState, Session, with_loader_criteria

from shared.auth import CurrentUser, Principal
from shared.errors import Forbidden, NotFound

SESSION_KEY = "hai_center_scope"

# a model's rows visible to the given centres (a SQL condition on the model's columns)
Rule = Callable[[list[str]], ColumnElement[bool]]


@dataclass(frozen=True)
class CenterScope:
    """The centres a caller may see: `centers` None means every centre. `lot_wide`: the
    caller also sees records that span centres but are meant for one audience (a lot's flow
    drift, for biomedical staff and admins; CONTRACT.md, Alerts)."""

    centers: frozenset[str] | None = None
    lot_wide: bool = False

    @property
    def every(self) -> bool:
        return self.centers is None

    def covers(self, center: str | None) -> bool:
        """True when records of `center` are visible (None, no centre: only to every-centre)."""
        return self.centers is None or (center is not None and center in self.centers)

    def require(self, center: str | None, *, field: str = "center") -> None:
        """403 unless the caller may write records of `center` (a centre the request names)."""
        if not self.covers(center):
            raise Forbidden(f"{field}: the token does not cover centre {center!r}"
                            if center is not None else
                            f"{field}: only a token of every centre may leave the centre out",
                            field=field)

    def require_every(self, what: str) -> None:
        """403 unless the caller sees every centre (`what` spans them all, e.g. the audit trail)."""
        if self.centers is not None:
            raise Forbidden(f"{what} spans every centre: it needs a token of every centre "
                            "(`centers: [\"*\"]`)")

    def visible_or_404(self, center: str | None, detail: str) -> None:
        """404 with `detail` (the answer of a missing record) unless `center` is visible."""
        if not self.covers(center):
            raise NotFound(detail)

    def where(self, column: Any, *, or_unassigned: bool = False) -> ColumnElement[bool]:
        """The SQL condition "`column` is a visible centre" (`or_unassigned`: or NULL)."""
        if self.centers is None:
            return true()
        return by_center(column, or_unassigned=or_unassigned)(sorted(self.centers))

    def filter(self, stmt: Select[Any], column: Any, *, or_unassigned: bool = False) -> Select[Any]:
        """`stmt` limited to rows whose `column` is a visible centre (for Core statements,
        which the ORM hook does not see)."""
        return stmt if self.centers is None else stmt.where(self.where(column,
                                                                       or_unassigned=or_unassigned))

    def visible(self, centers: list[str | None]) -> list[str | None]:
        """The given centre codes this scope covers."""
        return [c for c in centers if self.covers(c)]


EVERY_CENTER = CenterScope(None)


async def center_scope(principal: CurrentUser) -> CenterScope:
    """The request's centres, from its token (the dependency every route may ask for)."""
    return scope_of(principal)


def scope_of(principal: Principal) -> CenterScope:
    """A principal's scope: its token's centres; biomed and admin also see lot-wide records."""
    return CenterScope(principal.centers, lot_wide=principal.has_any(LOT_WIDE_ROLES))


CentersDep = Annotated[CenterScope, Depends(center_scope)]
LOT_WIDE_ROLES = ("biomed",)  # and admin (Principal.has_any)


# --- the rows of each scoped table -----------------------------------------------------------

_RULES: dict[Any, dict[type[Any], Rule | ByScope]] = {}  # model registry → model → rule


@dataclass(frozen=True)
class ByScope:
    """A rule that depends on more of the scope than its centres: `of(scope)` is the rule."""

    of: Callable[[CenterScope], Rule]


def scope_rows(model: type[Any], rule: Rule | ByScope) -> None:
    """Declare which centre's rows `model` holds: in a scoped session every SELECT of it is
    limited to `rule(centers)` (a `ByScope` rule: `rule.of(scope)(centers)`)."""
    _RULES.setdefault(model.registry, {})[model] = rule


def by_center(column: InstrumentedAttribute[Any] | Any, *, or_unassigned: bool = False) -> Rule:
    """Rows whose own `column` names a visible centre (`or_unassigned`: or is NULL, a row of
    no centre that every caller sees)."""

    def rule(centers: list[str]) -> ColumnElement[bool]:
        inside = column.in_(centers) if centers else false()
        return or_(column.is_(None), inside) if or_unassigned else inside

    return rule


def by_parent(foreign_key: Any, parent_key: Any, parent_rule: Rule) -> Rule:
    """Rows of a table without a centre of its own, visible with their parent row."""

    def rule(centers: list[str]) -> ColumnElement[bool]:
        return foreign_key.in_(select(parent_key).where(parent_rule(centers)))

    return rule


def rules_of(model: type[Any], scope: CenterScope = EVERY_CENTER) -> Rule | None:
    """The rule declared for `model` as it applies to `scope` (None: a table of no centre,
    seen by every caller)."""
    rule = _RULES.get(model.registry, {}).get(model)
    return rule.of(scope) if isinstance(rule, ByScope) else rule


def scope_session(session: Session, scope: CenterScope) -> None:
    """Limit every later SELECT of this session to the scope's centres."""
    session.info[SESSION_KEY] = scope


@contextmanager
def unscoped(session: Session) -> Iterator[Session]:
    """The session seeing every centre for the block, its scope restored after: for figures
    that span the consortium and are filtered when answered (a registry's consortium rows, a
    snapshot kept for every caller, a cache of a whole table)."""
    scope = session.info.pop(SESSION_KEY, None)
    try:
        yield session
    finally:
        if scope is not None:
            session.info[SESSION_KEY] = scope


def session_scope(session: Session) -> CenterScope:
    """The scope a session was given (every centre when none)."""
    scope = session.info.get(SESSION_KEY)
    return scope if isinstance(scope, CenterScope) else EVERY_CENTER


@event.listens_for(Session, "do_orm_execute")
def _limit_to_centers(state: ORMExecuteState) -> None:
    """Add each scoped model's rule to an ORM SELECT of a scoped session."""
    scope = state.session.info.get(SESSION_KEY)
    if not isinstance(scope, CenterScope) or scope.centers is None:
        return
    if not state.is_select or state.is_column_load or state.is_relationship_load:
        return  # loads of attributes and relationships carry the criteria already
    mapper = state.bind_mapper
    registries = [mapper.registry] if mapper is not None else list(_RULES)
    centers = sorted(scope.centers)
    options = [with_loader_criteria(model, rule(centers), include_aliases=True)
               for registry in registries for model in _RULES.get(registry, {})
               if (rule := rules_of(model, scope)) is not None]
    if options:
        state.statement = state.statement.options(*options)
