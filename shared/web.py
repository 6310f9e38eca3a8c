"""The FastAPI app every service is built on: errors, auth state, health, readiness, metrics."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

import structlog
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import tracing
from shared.auth import Principal, TokenVerifier, authenticate
from shared.db import UnitOfWork
from shared.errors import (
    PROBLEM_SCHEMA,
    ServerErrorGuard,
    install_error_handlers,
    problem,
    problem_response,
)
from shared.runtime import ServiceRuntime
from shared.scoping import scope_of

log = structlog.get_logger(__name__)


async def get_runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]


# Threads of their own for the commit or rollback that ends a request. Were it queued for the
# request threadpool, it could wait behind requests that hold every thread while they wait for
# a pooled connection, which only that commit or rollback would give back: every one then
# stalls until the pool's checkout timeout. Neither waits for a connection (each holds its own).
_RELEASE = ThreadPoolExecutor(max_workers=16, thread_name_prefix="uow-release")


async def get_uow(runtime: RuntimeDep, request: Request) -> AsyncIterator[UnitOfWork]:
    """The request's unit of work, and the HTTP edge of the commit rule (see `UnitOfWork`).

    When the route returns, its transaction is committed; when it raises, rolled back. On the
    services' routers (`UnitOfWorkRoute`) the commit runs in the route's own thread as soon as
    it returns; this dependency commits whatever a route of another router left open. It has
    the "function" scope: it ends after the answer is serialized and before a byte of it is
    sent, so a commit that fails (a unique key written first by a concurrent request, a
    serialization failure, the database gone) is answered by the error handlers (409, 503),
    never with the 2xx the route meant. `Idempotency.run` commits on its own (the stored answer
    goes in with the change); nothing is left to commit then.

    Opening a session does no I/O, and closing one with no transaction open returns nothing to
    the database, so those run on the event loop; a commit or a rollback talks to the database
    and runs on threads of its own (`_RELEASE`)."""
    uow = runtime.uow_factory.for_request()
    uow.__enter__()
    principal = getattr(request.state, "principal", None)
    if isinstance(principal, Principal):  # every /v1 and /fhir request: the gate checked its token
        uow.scope_to(scope_of(principal))
    try:
        yield uow
    except BaseException:
        await _release(uow, commit=False)
        raise
    await _release(uow, commit=True)


def _committing(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """The route, then the commit of the units of work it was handed, in the route's thread."""
    if getattr(endpoint, "commits_its_unit_of_work", False) or inspect.iscoroutinefunction(
            inspect.unwrap(endpoint)):
        return endpoint  # wrapped already; or async, where get_uow commits (no route is, here)

    @functools.wraps(endpoint)
    def route_then_commit(*args: Any, **kwargs: Any) -> Any:
        result = endpoint(*args, **kwargs)
        for value in kwargs.values():
            if isinstance(value, UnitOfWork):
                value.commit()
        return result

    route_then_commit.commits_its_unit_of_work = True  # type: ignore[attr-defined]
    return route_then_commit


class UnitOfWorkRoute(APIRoute):
    """A route whose unit of work (`UowDep`) is committed in the route's own thread, as soon as
    it returns. The validation of its answer then needs another thread of the request pool:
    were the commit left to `get_uow`, after it, a burst of requests waiting for the row this
    one holds (or for a pooled connection) could hold every thread of the pool while this one
    waits for a thread to finish and let go of the row: all stall until the pool's timeout."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, _committing(endpoint), **kwargs)


async def _release(uow: UnitOfWork, *, commit: bool) -> None:
    """End the request's transaction (commit or roll back) and close its session."""
    if not uow.session.in_transaction():
        uow.__exit__(None, None, None)
        return
    await asyncio.get_running_loop().run_in_executor(
        _RELEASE, _commit_and_close if commit else _close, uow)


def _commit_and_close(uow: UnitOfWork) -> None:
    try:
        uow.commit()
    finally:
        uow.__exit__(None, None, None)


def _close(uow: UnitOfWork) -> None:
    uow.__exit__(None, None, None)  # rolls back what is still open


UowDep = Annotated[UnitOfWork, Depends(get_uow, scope="function")]


# the prefixes routers are included under; their routes report their path without it
ROUTER_PREFIXES = ("/v1", "/fhir/R4")


def route_path(scope: Scope) -> str:
    """The template of the route that served a request (`/v1/pumps/{serial}`), never the raw
    path (a path may carry an MRN); `unmatched` when no route did."""
    template: str = getattr(scope.get("route"), "path", "unmatched")
    for prefix in ROUTER_PREFIXES:
        if scope["path"].startswith(prefix + "/") and not template.startswith(prefix):
            return prefix + template
    return template


class _Metrics:
    """Request counts and latencies by route template (plain ASGI: no per-request task)."""

    def __init__(self, app: ASGIApp, runtime: ServiceRuntime) -> None:
        self.app = app
        self.requests = Counter("hai_http_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=runtime.registry)
        self.latency = Histogram("hai_http_request_seconds", "HTTP request latency",
                                 ["method", "route"], registry=runtime.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            # the route template, never the raw path: paths may carry an MRN
            template = route_path(scope)
            method = scope["method"]
            self.requests.labels(method, template, str(status)).inc()
            self.latency.labels(method, template).observe(time.perf_counter() - started)
            if status >= 500:
                log.warning("http.error", method=method, route=template, status=status)


class _UrlGuard:
    """Refuses a path or query string that carries NUL or bytes that are not UTF-8, before any
    route runs: no such text can name a resource (404) or filter a list (422 naming the
    parameter). The types of each parameter refuse it too; this is the backstop for any
    parameter that forgets to."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = url_refusal(scope.get("raw_path") or scope["path"].encode("utf-8", "replace"),
                                  scope.get("query_string", b""))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _bad_bytes(raw: bytes) -> str | None:
    if b"\x00" in raw:
        return "must not contain the NUL character"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "must be valid UTF-8 text"
    return None


def url_refusal(raw_path: bytes, query_string: bytes) -> JSONResponse | None:
    """The problem answer for a hostile path (404) or query parameter (422), else None."""
    problem_text = _bad_bytes(unquote_to_bytes(raw_path))
    if problem_text:
        return problem(404, f"no such resource: the path {problem_text}")
    errors = []
    for pair in query_string.split(b"&"):
        name, _, value = pair.partition(b"=")
        name_bytes = unquote_to_bytes(name.replace(b"+", b" "))
        field = name_bytes.decode("utf-8", "replace").replace("\x00", "") or "query"
        for part in (name_bytes, unquote_to_bytes(value.replace(b"+", b" "))):
            problem_text = _bad_bytes(part)
            if problem_text:
                errors.append({"field": field, "message": problem_text, "type": "text_invalid"})
                break
    if errors:
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem(422, detail, errors=errors)
    return None


# answers the gate gives before the app sees the request; None lets the request through
Admission = Callable[[Scope], Awaitable[Response | None]]


class RequestGate:
    """Admit a request before its body is read, then cap the body before anything parses it.

    `admit` runs first (the services check the bearer token there: 401/403 without reading a
    byte of the body); then a body over `max_body_bytes`, by its Content-Length or by the bytes
    of a chunked upload as they come, is answered 413 and the rest of it is not read. A body
    within the limit is buffered here and handed to the app whole."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, admit: Admission | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.admit = admit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = _content_length(headers)
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        unread_body = chunked or (declared or 0) > 0
        if self.admit is not None:
            refusal = await self.admit(scope)
            if refusal is not None:
                # a large or unknown body is not worth draining: close the connection after this
                if chunked or (declared or 0) > self.max_body_bytes:
                    refusal.headers["connection"] = "close"
                await refusal(scope, receive, send)
                return
        if declared is not None and declared > self.max_body_bytes:
            await self._too_large(scope, receive, send)
            return
        if not unread_body:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left; nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(413, f"the request body is over the limit of {self.max_body_bytes} bytes",
                           headers={"connection": "close"})
        await response(scope, receive, send)


def _content_length(headers: Headers) -> int | None:
    raw = headers.get("content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None  # the server refuses such a request before it reaches us


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the buffered body once, then whatever the connection says next."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def bearer_admission(protected_prefixes: Sequence[str] = ("/v1", "/fhir")) -> Admission:
    """The services' admission: every route under /v1 (and the FHIR API under /fhir) needs a
    valid token with a known role."""

    async def admit(scope: Scope) -> Response | None:
        path: str = scope["path"]
        root_path: str = scope.get("root_path", "")
        if root_path and path.startswith(root_path):  # behind a proxy's prefix, as the router sees it
            path = path[len(root_path):]
        if scope["method"] == "OPTIONS" or not any(
                path == prefix or path.startswith(prefix + "/") for prefix in protected_prefixes):
            return None
        app = scope["app"]
        verifier = getattr(app.state, "token_verifier", None)
        if verifier is None:
            return problem(503, "no token verifier configured")
        try:
            principal = await authenticate(Headers(scope=scope).get("authorization", ""), verifier)
        except HTTPException as exc:
            return problem(exc.status_code, str(exc.detail),
                           headers=dict(exc.headers) if exc.headers else None)
        scope.setdefault("state", {})["principal"] = principal
        return None

    return admit


def create_service_app(
    runtime: ServiceRuntime,
    routers: Sequence[APIRouter],
    *,
    title: str,
    description: str = "",
) -> FastAPI:
    """A service's app: its routers under /v1 plus the platform's endpoints."""
    app = FastAPI(title=title, description=description, version="1.0.0")
    app.state.runtime = runtime
    app.state.token_verifier = TokenVerifier(runtime.settings)
    install_error_handlers(app)
    app.add_middleware(_UrlGuard)  # within the gate: no token is 401 whatever the URL holds
    app.add_middleware(RequestGate, max_body_bytes=runtime.settings.max_body_bytes,
                       admit=bearer_admission())
    app.add_middleware(_Metrics, runtime=runtime)
    tracing.instrument_app(app)
    if runtime.settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=runtime.settings.cors_origins,
                           allow_methods=["*"], allow_headers=["*"])
    app.add_middleware(ServerErrorGuard)  # outermost of ours: a 500 from anything within
    for router in routers:
        app.include_router(router, prefix="/v1")
    app.include_router(health_router())
    document_problems(app)
    return app


WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def document_problems(app: FastAPI) -> None:
    """Declare in the app's OpenAPI the problem+json answers each /v1 operation can give."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_problem_responses(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def with_problem_responses(spec: dict[str, Any]) -> dict[str, Any]:
    """401, 403 and 422 on every /v1 operation, 404 where the path names a resource or a write
    looks one up, 409 and 413 on writes; all as problem+json (a route's own description is kept)."""
    for path, operations in spec.get("paths", {}).items():
        if not path.startswith("/v1"):
            continue
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            statuses = [401, 403, 422]
            writes = method.upper() in WRITE_METHODS
            if writes or "{" in path:
                statuses.append(404)
            if writes:
                statuses += [409, 413]
            responses = operation["responses"]
            for status in statuses:
                declared = responses.get(str(status), {})
                responses[str(status)] = problem_response(status, declared.get("description"))
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    if "HTTPValidationError" not in json.dumps(spec.get("paths", {})):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return spec


def health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @router.get("/readyz", response_model=None, responses={503: problem_response(503)})
    def readyz(runtime: RuntimeDep) -> JSONResponse | dict[str, Any]:
        """The database and the broker answer (and the service's own checks pass)."""
        down: dict[str, str] = {}
        try:
            runtime.check_database()
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            down["database"] = type(exc).__name__
        try:
            runtime.bus.check()
        except Exception as exc:  # noqa: BLE001
            down["broker"] = type(exc).__name__
        for check in runtime.readiness_checks:
            try:
                problem_text = check(runtime)
            except Exception as exc:  # noqa: BLE001
                problem_text = type(exc).__name__
            if problem_text:
                down[getattr(check, "__name__", "check")] = problem_text
        if down:
            return problem(503, "not ready: " + ", ".join(f"{k} ({v})" for k, v in down.items()),
                           down=down)
        return {"status": "ready"}

    @router.get("/metrics", response_class=Response, responses={
        200: {"description": "Prometheus text format", "content": {CONTENT_TYPE_LATEST: {}}}})
    def metrics(runtime: RuntimeDep) -> Response:
        """Prometheus text format."""
        return Response(generate_latest(runtime.registry), media_type=CONTENT_TYPE_LATEST)

    return router
