"""Access audit: every read of patient data recorded (who, when, what), and the admin's query.

A read is one `audit_log` row per patient read (action `read`, entity `patient`, entity_id the
MRN, changes `{route, ids}`), all rows of a request written by one statement in the request's
own transaction. MRNs go to this table only, never to a log line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from shared.auth import CurrentUser, Principal, require_roles
from shared.db import UnitOfWork, bulk_insert
from shared.pagination import Page, PageDep, paginate
from shared.schemas import Timestamp
from shared.scoping import CentersDep
from shared.text import Key
from shared.web import UnitOfWorkRoute, UowDep, route_path

T = TypeVar("T")
READ_ACTION = "read"
PATIENT_ENTITY = "patient"


class ReadAudit:
    """Records the patients one request read; `item`/`page` pass the answer through unchanged."""

    def __init__(self, uow: UnitOfWork, actor: str, route: str) -> None:
        self.uow = uow
        self.actor = actor
        self.route = route

    def record(self, reads: Iterable[tuple[str | None, str]]) -> None:
        """Write one row per MRN read (with the ids read under it); the request's commit keeps them."""
        ids_by_mrn: dict[str, list[str]] = {}
        for mrn, record_id in reads:
            if mrn:
                ids_by_mrn.setdefault(mrn, []).append(record_id)
        if not ids_by_mrn:
            return
        now = self.uow.now()
        bulk_insert(self.uow.session, self.uow.platform.audit, [
            {"at": now, "actor": self.actor, "action": READ_ACTION,
             "entity_type": PATIENT_ENTITY, "entity_id": mrn,
             "changes": {"route": self.route, "ids": ids}}
            for mrn, ids in ids_by_mrn.items()])

    def item(self, obj: T, mrn: Callable[[T], str | None] | None = None,
             ident: Callable[[T], Any] | None = None) -> T:
        """Record the read of one record and return it."""
        self.record([(_mrn(obj, mrn), _ident(obj, ident))])
        return obj

    def page(self, page: Page[T], mrn: Callable[[T], str | None] | None = None,
             ident: Callable[[T], Any] | None = None) -> Page[T]:
        """Record the reads of every item of a page and return it."""
        self.record((_mrn(it, mrn), _ident(it, ident)) for it in page.items)
        return page


def _mrn(obj: Any, get: Callable[[Any], str | None] | None) -> str | None:
    return get(obj) if get is not None else getattr(obj, "patient_mrn", None)


def _ident(obj: Any, get: Callable[[Any], Any] | None) -> str:
    return str(get(obj) if get is not None else obj.id)


def route_template(request: Request) -> str:
    """`METHOD /v1/path/{param}` (or `/fhir/R4/...`): the route template, never the raw path
    (it may carry an MRN)."""
    return f"{request.method} {route_path(request.scope)}"


async def read_audit(request: Request, principal: CurrentUser, uow: UowDep) -> ReadAudit:
    """The request's read audit, in the request's unit of work."""
    return ReadAudit(uow, principal.sub, route_template(request))


ReadAuditDep = Annotated[ReadAudit, Depends(read_audit)]
Admin = Annotated[Principal, Depends(require_roles())]


class AuditEntry(BaseModel):
    """One entry of the audit trail: a write, or a read of a patient's data."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    action: str
    entity_type: str
    entity_id: str
    changes: dict[str, Any]


def audit_router() -> APIRouter:
    """`GET /v1/audit`: the audit trail, newest first, for `admin` only."""
    router = APIRouter(tags=["audit"], route_class=UnitOfWorkRoute)

    @router.get("/audit")
    def list_audit(
        _: Admin, uow: UowDep, page: PageDep, centers: CentersDep,
        patient_mrn: Key | None = None,
        actor: Key | None = None,
        since: Annotated[Timestamp | None, Query()] = None,
        action: Key | None = None,
    ) -> Page[AuditEntry]:
        """Who read or changed what, newest first (admin): `patient_mrn` keeps the entries about
        that patient, `actor` one token subject's, `since` those at or after a time. It spans
        every centre: a token of some centres only is 403."""
        centers.require_every("the audit trail")
        table = uow.platform.audit
        stmt = select(table)
        if patient_mrn is not None:
            stmt = stmt.where(table.c.entity_type == PATIENT_ENTITY,
                              table.c.entity_id == patient_mrn)
        if actor is not None:
            stmt = stmt.where(table.c.actor == actor)
        if since is not None:
            stmt = stmt.where(table.c.at >= since)
        if action is not None:
            stmt = stmt.where(table.c.action == action)
        return paginate(uow.session, stmt, keys=[table.c.id], params=page, descending=True,
                        scalars=False, to_item=AuditEntry.model_validate)

    return router
