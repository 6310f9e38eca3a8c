"""The infusion nurses' dashboard: server-rendered pages over the three services' APIs."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from services.dashboard import biomed, csrf, menu, oncology, pharmacy, reports, views
from services.dashboard.localtime import (
    CentreZones,
    fmt_clock,
    fmt_local,
    localize_text,
    zone_for,
)
from services.dashboard.plain import label
from services.dashboard.routes import router
from services.dashboard.session import LoginRequired, Session, login_url, read_session
from services.dashboard.settings import DashboardSettings
from shared.auth import Principal, TokenVerifier
from shared.clock import Clock, SystemClock
from shared.contracts.vocabulary import (
    AlertStatus,
    DeliveryStatus,
    DueBasis,
    FillType,
    PumpStatus,
    RefillStatus,
    Regimen,
    TherapyStatus,
)
from shared.errors import ServerErrorGuard
from shared.web import RequestGate

HERE = Path(__file__).parent
log = structlog.get_logger(__name__)


def _zone(context: Any, center: Any = None) -> ZoneInfo:
    """The page's zone; a row's own centre's (`center`) on a page of several centres."""
    zone_of = context.get("zone_of")
    if center and isinstance(center, str) and callable(zone_of):
        found = zone_of(center)
        if isinstance(found, ZoneInfo):
            return found
    zone = context.get("zone")
    return zone if isinstance(zone, ZoneInfo) else zone_for(context["settings"])


@pass_context
def _ts(context: Any, value: Any, offset: bool = False, center: Any = None) -> str:
    """A timestamp in the centre's local time (`offset`: with its UTC offset; `center`: the
    row's centre, on a list of several)."""
    when = value if isinstance(value, datetime) else views.parse_ts(value)
    return fmt_local(when, _zone(context, center), offset=offset)


@pass_context
def _local_text(context: Any, value: Any, center: Any = None) -> str:
    """A service's sentence with its ISO timestamps written in local time."""
    return localize_text(str(value or ""), _zone(context, center))


@pass_context
def _clock(context: Any, value: datetime) -> str:
    return fmt_clock(value, _zone(context))


@pass_context
def _csrf_field(context: Any, login: bool = False) -> Markup:
    return csrf.field(context["request"], login=login)


@pass_context
def _csrf_token(context: Any, login: bool = False) -> str:
    return csrf.token(context["request"], login=login)


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.filters["ts"] = _ts
    env.filters["local_text"] = _local_text
    env.filters["clock"] = _clock
    env.filters["label"] = label
    env.filters["parse_ts"] = views.parse_ts
    env.globals["relative"] = views.fmt_relative
    env.globals["csrf_field"] = _csrf_field  # inside every <form method="post">
    env.globals["csrf_token"] = _csrf_token  # the htmx header, on <body>
    env.globals["menu_for"] = menu.menu_for
    env.globals["home_for"] = menu.home_for
    # the contract's vocabulary: templates compare with `AlertStatus.FIRING`, never 'firing'
    env.globals.update(AlertStatus=AlertStatus, DueBasis=DueBasis, FillType=FillType, PumpStatus=PumpStatus,
                       RefillStatus=RefillStatus, DeliveryStatus=DeliveryStatus, Regimen=Regimen,
                       TherapyStatus=TherapyStatus)
    return templates


def create_app(settings: DashboardSettings, *, clock: Clock | None = None,
               transport: httpx.BaseTransport | None = None) -> FastAPI:
    """The dashboard app; tests may pass a clock and an httpx transport for the API calls."""
    # every state-changing request of every route: same origin, and the page's token
    app = FastAPI(title="HAI dashboard", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(csrf.protect)])
    app.state.settings = settings
    app.state.clock = clock or SystemClock()
    app.state.transport = transport
    # the clock that mints the dev tokens also judges their expiry (the wall clock in production)
    app.state.verifier = TokenVerifier(settings, app.state.clock)
    app.state.templates = _templates()
    app.state.centre_zones = CentreZones()  # each centre's own time zone, kept a minute
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(router)
    for role_pages in (pharmacy.router, oncology.router, biomed.router, reports.router):
        app.include_router(role_pages)

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        return _to_sign_in(request, exc.next_path)

    async def _session(request: Request) -> Session | None:
        verifier = app.state.verifier
        if verifier.uses_jwks:  # may fetch the key set: not on the event loop
            return await run_in_threadpool(read_session, request, verifier)
        return read_session(request, verifier)

    async def _signed_in(request: Request) -> Principal | None:
        """The signed-in user of a page that does not require one (its menu), else None."""
        found = await _session(request)
        return found.principal if found is not None else None

    async def _signed_in_first(scope: Scope) -> Response | None:
        # a form posted without a session goes to sign in before its body is read
        if scope["method"] != "POST" or scope["path"] in SESSIONLESS_POSTS:
            return None
        request = Request(scope)
        found = await _session(request)
        return None if found is not None else _to_sign_in(request, request.url.path)

    app.add_middleware(RequestGate, max_body_bytes=settings.max_body_bytes, admit=_signed_in_first)
    app.add_middleware(ServerErrorGuard, respond=_server_error_page)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # an unknown page of the dashboard is a page with a way back; an API-ish path keeps JSON
        if exc.status_code != 404 or request.url.path.startswith(JSON_PATHS):
            return await http_exception_handler(request, exc)
        templates: Jinja2Templates = request.app.state.templates
        return templates.TemplateResponse(request, "not_found.html",
                                          {"settings": settings, "user": await _signed_in(request),
                                           "path": request.url.path}, status_code=404)

    @app.exception_handler(csrf.CsrfRejected)
    async def _csrf_rejected(request: Request, exc: csrf.CsrfRejected) -> Response:
        log.warning("dashboard.csrf_refused", method=request.method, path=request.url.path,
                    reason=exc.reason)
        templates: Jinja2Templates = request.app.state.templates
        return templates.TemplateResponse(request, "forbidden.html",
                                          {"settings": settings, "user": None, "reason": exc.reason},
                                          status_code=403)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.middleware("http")
    async def _security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.url.path.startswith("/static/"):
            return response
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app


JSON_PATHS = ("/v1/", "/api/", "/static/", "/healthz")
SESSIONLESS_POSTS = frozenset({"/login", "/logout"})


def _server_error_page() -> Response:
    return HTMLResponse("<!doctype html><title>Error</title><p>Something went wrong; it has been "
                        "logged. <a href=\"/worklist\">Back to the worklist</a></p>", status_code=500)


def _to_sign_in(request: Request, next_path: str) -> Response:
    url = login_url(next_path)
    if request.headers.get("hx-request") == "true":
        return HTMLResponse("", headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)
