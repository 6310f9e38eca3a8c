"""`Idempotency-Key` on creating POSTs: same key and body → the first answer; other body → 409."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from shared.auth import CurrentUser
from shared.db import UnitOfWork
from shared.errors import Conflict


class Idempotency:
    """The request's key (if any) and what identifies the request it belongs to."""

    def __init__(self, key: str | None, scope: str) -> None:
        self.key = key
        self.scope = scope

    def run(
        self,
        uow: UnitOfWork,
        body: Any,
        create: Callable[[], Any],
        *,
        status_code: int = 201,
    ) -> Response:
        """Run `create` in the unit of work and commit it with the stored answer, or replay the
        first answer for this key (an edge of the commit rule: see `UnitOfWork`)."""
        content_hash = ""
        if self.key is not None:
            content_hash = _hash(body)
            replay = self._stored(uow, content_hash)
            if replay is not None:
                return replay
        try:
            result = create()
            # serialized once, by pydantic when it can: the answer and the stored copy are the same
            content = (result.model_dump_json(by_alias=True) if isinstance(result, BaseModel)
                       else json.dumps(jsonable_encoder(result)))
            if self.key is not None:
                uow.session.execute(insert(uow.platform.idempotency).values(
                    scope=self.scope, key=self.key, request_hash=content_hash,
                    status_code=status_code, response_body=content, created_at=uow.now(),
                ))
            uow.commit()
        except (IntegrityError, Conflict):
            # a concurrent request with the same key may have won the race, its creation and
            # its key committed together after our first look (our write then collides with
            # its row, or our read sees it): answer as it did
            if self.key is None:
                raise
            uow.rollback()
            replay = self._stored(uow, content_hash)
            if replay is None:
                raise
            return replay
        return Response(content, status_code=status_code, media_type="application/json")

    def _stored(self, uow: UnitOfWork, content_hash: str) -> Response | None:
        table = uow.platform.idempotency
        row = uow.session.execute(
            select(table).where(table.c.scope == self.scope, table.c.key == self.key)
        ).first()
        if row is None:
            return None
        if row.request_hash != content_hash:
            raise Conflict(
                f"Idempotency-Key {self.key!r} was already used with a different request body"
            )
        return Response(row.response_body, status_code=row.status_code,
                        media_type="application/json", headers={"Idempotent-Replayed": "true"})


def _hash(body: Any) -> str:
    if isinstance(body, BaseModel):
        body = body.model_dump(mode="json")
    raw = json.dumps(jsonable_encoder(body), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


async def idempotency(
    request: Request,
    principal: CurrentUser,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Idempotency:
    """The Idempotency-Key of this request, scoped to its method, path and caller."""
    return Idempotency(idempotency_key, f"{request.method} {request.url.path} {principal.sub}")


IdempotencyDep = Annotated[Idempotency, Depends(idempotency)]
