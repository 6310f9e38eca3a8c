"""Server-side calls to the three services' APIs with the signed-in user's token."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import structlog

from services.dashboard.plain import plain_field_errors, plain_refusal, plain_unplaced
from services.dashboard.settings import BACKENDS, DashboardSettings

log = structlog.get_logger(__name__)

TIMEOUT_SECONDS = 5.0


@dataclass
class ApiError(Exception):
    """An API answered with a problem (or could not be reached: status 0 / 503)."""

    service: str
    status: int
    title: str
    detail: str
    errors: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.service}: {self.status} {self.title}: {self.detail}"

    @property
    def unreachable(self) -> bool:
        return self.status == 0

    def field_errors(self, zone: ZoneInfo | None = None) -> dict[str, str]:
        """The 422 `errors` list as {field: sentence in plain words, its times in `zone`} (the
        last segment of a dotted field)."""
        return plain_field_errors(self.errors, zone)

    def banner(self) -> str:
        """A sentence for the page's error banner (plain words: no status code); a 422 says
        what each named field needs."""
        if self.status == 422 and self.errors:
            return plain_unplaced(self.field_errors())
        return plain_refusal(self.service, self.status, self.detail)


def _problem(service: str, response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    errors = body.get("errors") if isinstance(body.get("errors"), list) else []
    return ApiError(
        service=service,
        status=response.status_code,
        title=str(body.get("title") or response.reason_phrase or "Error"),
        detail=str(body.get("detail") or response.text[:200] or "no detail"),
        errors=errors or [],
    )


class Api:
    """One user's view of the three services; every call raises ApiError on failure."""

    def __init__(self, settings: DashboardSettings, token: str | None,
                 transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._clients = {
            name: httpx.Client(base_url=settings.service_url(name), headers=headers,
                               timeout=TIMEOUT_SECONDS, transport=transport)
            for name in BACKENDS
        }

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def request(self, service: str, method: str, path: str, *, params: dict[str, Any] | None = None,
                json: Any = None, headers: dict[str, str] | None = None) -> Any:
        """Call one service; the decoded JSON body, or ApiError."""
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            response = self._clients[service].request(method, path, params=clean, json=json,
                                                      headers=headers)
        except httpx.HTTPError as exc:
            log.warning("dashboard.api_unreachable", service=service, error=type(exc).__name__)
            raise ApiError(service, 0, "Unreachable", type(exc).__name__) from exc
        if response.status_code >= 400:
            err = _problem(service, response)
            if response.status_code >= 500:
                log.warning("dashboard.api_error", service=service, status=response.status_code)
            raise err
        if not response.content:
            return None
        return response.json()

    def get(self, service: str, path: str, **params: Any) -> Any:
        """GET with query parameters."""
        return self.request(service, "GET", path, params=params)

    def post(self, service: str, path: str, body: Any, *, idempotency_key: str | None = None) -> Any:
        """POST a JSON body (with an Idempotency-Key when given)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self.request(service, "POST", path, json=body, headers=headers)

    def items(self, service: str, path: str, *, max_items: int = 500, **params: Any) -> list[Any]:
        """Every item of a paginated list, following cursors up to max_items."""
        out: list[Any] = []
        cursor: str | None = None
        while True:
            page = self.get(service, path, limit=min(500, max_items), cursor=cursor, **params)
            if isinstance(page, list):  # tolerate a bare list
                return (out + page)[:max_items]
            out.extend(page.get("items", []))
            cursor = page.get("next_cursor")
            if not cursor or len(out) >= max_items:
                return out[:max_items]
