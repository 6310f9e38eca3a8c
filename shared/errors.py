"""RFC 9457 problem details: the one shape of every error the services answer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.dberrors import constraint_of, is_contention, is_unique_violation, safe_db_error, table_of

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
BODY_PARSE_ERROR = "There was an error parsing the body"  # FastAPI's 400 for an undecodable body
TITLES = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 409: "Conflict", 413: "Content too large", 415: "Unsupported media type",
    422: "Unprocessable content", 429: "Too many requests", 500: "Internal server error",
    503: "Service unavailable",
}


# The JSON schema of a problem document, published once in each OpenAPI as `Problem`.
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"},
                               "type": {"type": "string"}},
            },
        },
    },
    "additionalProperties": True,
}
PROBLEM_DESCRIPTIONS = {
    401: "missing, expired or invalid bearer token",
    403: "the token lacks a role this route needs",
    404: "unknown resource",
    409: "state conflict (the detail says the current state), a concurrent request that wrote "
         "the same key first or holds the row, or an Idempotency-Key reused with another body",
    413: "the request body is over the size limit (HAI_MAX_BODY_BYTES)",
    422: "bad input; `errors` names each bad field",
    503: "a dependency (database, broker) is unavailable, or every database connection is busy "
         "(see Retry-After)",
}


def problem_response(status: int, description: str | None = None) -> dict[str, Any]:
    """The OpenAPI description of one problem+json answer."""
    return {
        "description": description or PROBLEM_DESCRIPTIONS.get(status, TITLES.get(status, "Error")),
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


class DomainError(Exception):
    """A domain failure with its HTTP status; raised by service functions, shaped by the app."""

    status = 400

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.extra = extra


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409


class Forbidden(DomainError):
    """The caller may not do this (e.g. name a centre its token does not cover)."""

    status = 403


class Invalid(DomainError):
    """Bad input the schema could not catch (a 422 naming the field)."""

    status = 422

    def __init__(self, field: str, message: str, **extra: Any) -> None:
        super().__init__(f"{field}: {message}", errors=[{"field": field, "message": message}],
                         **extra)
        self.field = field

    @classmethod
    def of(cls, problems: Sequence[tuple[str, str]]) -> Invalid:
        """One 422 naming every (field, message) problem; the first is its `field`."""
        field, message = problems[0]
        exc = cls(field, message)
        exc.errors = [{"field": f, "message": m} for f, m in problems]
        exc.detail = "; ".join(f"{f}: {m}" for f, m in problems)
        return exc


def problem(status: int, detail: str, *, errors: list[dict[str, Any]] | None = None,
            type_: str | None = None, headers: dict[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {
        "type": type_ or "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or (str(loc[0]) if loc else "body")


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """The field list of a 422: `[{field, message, type}]`."""
    out = []
    for err in exc.errors():
        out.append({
            "field": _field_path(err.get("loc", ())),
            "message": str(err.get("msg", "invalid")),
            "type": str(err.get("type", "value_error")),
        })
    return out


def install_error_handlers(app: FastAPI) -> None:
    """Shape every error of the app as problem+json; never a 500 for bad input."""

    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return problem(exc.status, exc.detail, errors=exc.errors, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem(422, detail or "invalid request", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 400 and exc.detail == BODY_PARSE_ERROR:
            # a body that is not even text (FastAPI's 400) is bad input like any other: 422
            return problem(422, "body: not valid JSON", headers=headers,
                           errors=[{"field": "body", "message": "not valid JSON",
                                    "type": "json_invalid"}])
        return problem(exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, exc: IntegrityError) -> JSONResponse:
        if not is_unique_violation(exc):
            raise exc  # a bug, not a race: the 500 of ServerErrorGuard
        # a concurrent request wrote the same key between our read and our write; the answer
        # names the table and constraint, never the values (the database's text carries them)
        table, constraint = table_of(exc), constraint_of(exc)
        log.info("database.unique_race", error=safe_db_error(exc))
        where = f" into {table}" if table else ""
        extra: dict[str, Any] = {"constraint": constraint} if constraint else {}
        return problem(409, f"already exists: a concurrent request wrote the same key{where} "
                            "first; read the current state before trying again", **extra)

    @app.exception_handler(OperationalError)
    async def _db_down(_: Request, exc: OperationalError) -> JSONResponse:
        if is_contention(exc):
            log.info("database.contention", error=safe_db_error(exc))
            return problem(409, "the resource is locked by another request; try again",
                           headers={"Retry-After": "1"})
        log.error("database.unavailable", error=safe_db_error(exc))
        return problem(503, "database unavailable; try again shortly",
                       headers={"Retry-After": "2"})

    @app.exception_handler(PoolTimeoutError)
    async def _pool_exhausted(_: Request, exc: PoolTimeoutError) -> JSONResponse:
        # every connection is busy: say so at once rather than queue the caller
        log.warning("database.pool_exhausted")
        return problem(503, "every database connection is busy; try again shortly",
                       headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # reached only when ServerErrorGuard is not in front (it answers 500s itself)
        _log_failure(request.scope)
        return server_error()


def server_error() -> JSONResponse:
    """The 500 problem; it closes the connection, since the server may drop it after an error."""
    return problem(500, "internal error; it has been logged", headers={"connection": "close"})


def _log_failure(scope: Scope) -> None:
    # the route template, never the raw path: a path may carry an MRN
    route = getattr(scope.get("route"), "path", "unmatched")
    log.exception("request.failed", method=scope.get("method"), route=route)


class ServerErrorGuard:
    """Answer an unexpected exception with the 500 problem and `Connection: close`, and stop it here.

    Left to Starlette, the exception is re-raised after the 500 is sent and the server then
    resets the connection, without having told a keep-alive client it would: the client's next
    request on that connection fails. Here the answer says `Connection: close`, its body is sent
    whole, and the server closes the connection cleanly after it."""

    def __init__(self, app: ASGIApp, respond: Callable[[], Response] | None = None) -> None:
        self.app = app
        self.respond = respond or server_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            if started:
                raise  # too late for an answer: the server drops the connection
            _log_failure(scope)
            response = self.respond()
            response.headers["connection"] = "close"
            await response(scope, receive, send)
