"""The FastAPI app every service is built on: errors, auth state, health, readiness, metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from shared.auth import TokenVerifier
from shared.clock import Clock
from shared.db import UnitOfWork
from shared.errors import install_error_handlers, problem
from shared.runtime import ServiceRuntime

log = structlog.get_logger(__name__)


def get_runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]


def get_uow(runtime: RuntimeDep) -> Iterator[UnitOfWork]:
    """A unit of work for one request; the route (or Idempotency.run) commits it."""
    with runtime.uow_factory() as uow:
        yield uow


def get_clock(runtime: RuntimeDep) -> Clock:
    return runtime.clock


UowDep = Annotated[UnitOfWork, Depends(get_uow)]
ClockDep = Annotated[Clock, Depends(get_clock)]


class _Metrics(BaseHTTPMiddleware):
    def __init__(self, app: Any, runtime: ServiceRuntime) -> None:
        super().__init__(app)
        self.requests = Counter("hai_http_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=runtime.registry)
        self.latency = Histogram("hai_http_request_seconds", "HTTP request latency",
                                 ["method", "route"], registry=runtime.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        # the route template, never the raw path: paths may carry an MRN
        template = getattr(route, "path", "unmatched")
        if request.url.path.startswith("/v1/") and not template.startswith("/v1"):
            template = "/v1" + template  # included routers report their path without the prefix
        elapsed = time.perf_counter() - started
        self.requests.labels(request.method, template, str(response.status_code)).inc()
        self.latency.labels(request.method, template).observe(elapsed)
        if response.status_code >= 500:
            log.warning("http.error", method=request.method, route=template,
                        status=response.status_code)
        return response


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
    app.add_middleware(_Metrics, runtime=runtime)
    if runtime.settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=runtime.settings.cors_origins,
                           allow_methods=["*"], allow_headers=["*"])
    for router in routers:
        app.include_router(router, prefix="/v1")
    app.include_router(health_router())
    return app


def health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @router.get("/readyz", response_model=None)
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

    @router.get("/metrics")
    def metrics(runtime: RuntimeDep) -> Response:
        """Prometheus text format."""
        return Response(generate_latest(runtime.registry), media_type=CONTENT_TYPE_LATEST)

    return router
