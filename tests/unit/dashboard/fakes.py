"""The three services' APIs faked at the HTTP transport (httpx.MockTransport): what lies outside."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi.testclient import TestClient

from services.dashboard import csrf
from services.dashboard.app import create_app
from services.dashboard.settings import DashboardSettings
from shared.clock import MovableClock
from tests.factories import T0

PORTS = {"8101": "inventory", "8102": "scheduling", "8103": "alerts"}

Responder = Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeApis:
    """Routes `(service, method, path)` to canned answers and records every request."""

    routes: dict[tuple[str, str, str], Responder] = field(default_factory=dict)
    calls: list[tuple[str, str, str, dict[str, str], Any, httpx.Headers]] = field(default_factory=list)
    down: set[str] = field(default_factory=set)

    def on(self, service: str, method: str, path: str, answer: Any, status: int = 200) -> None:
        """Answer this call with a JSON body (or a function of the request)."""
        if callable(answer):
            self.routes[(service, method, path)] = answer
        else:
            self.routes[(service, method, path)] = lambda _r: httpx.Response(status, json=answer)

    def handler(self, request: httpx.Request) -> httpx.Response:
        service = PORTS[str(urlsplit(str(request.url)).port)]
        body = json.loads(request.content) if request.content else None
        params = dict(request.url.params)
        self.calls.append((service, request.method, request.url.path, params, body, request.headers))
        if service in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        responder = self.routes.get((service, request.method, request.url.path))
        if responder is None:
            return httpx.Response(404, json={"type": "about:blank", "title": "Not found",
                                             "status": 404, "detail": "no such thing"})
        return responder(request)

    def called(self, service: str, method: str, path: str) -> list[Any]:
        """The bodies (or params for GET) of the matching calls."""
        return [body if method != "GET" else params
                for s, m, p, params, body, _ in self.calls if (s, m, p) == (service, method, path)]


def page(items: list[Any]) -> dict[str, Any]:
    return {"items": items, "next_cursor": None}


def settings(**overrides: Any) -> DashboardSettings:
    values: dict[str, Any] = {
        "env": "test", "inventory_url": "http://api.test:8101", "scheduling_url": "http://api.test:8102",
        "alerts_url": "http://api.test:8103", "amqp_url": None,
    }
    values.update(overrides)
    return DashboardSettings(**values)


def client(fake: FakeApis, **overrides: Any) -> TestClient:
    """A dashboard on the fake APIs at a fixed time."""
    app = create_app(settings(**overrides), clock=MovableClock(T0),
                     transport=httpx.MockTransport(fake.handler))
    return TestClient(app, follow_redirects=False)


def login_token(c: TestClient) -> str:
    """Open the sign-in page as a browser does: its pre-session cookie, and the form's token."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text)
    assert found, "the sign-in form carries no CSRF token"
    return found.group(1)


def session_token(c: TestClient) -> str:
    """The token every page of the signed-in session carries."""
    key = csrf.key_for(c.app.state.settings)  # type: ignore[attr-defined]
    return csrf.session_token(key, c.cookies["hai_session"])


def sign_in(c: TestClient, sub: str = "nora.nurse", roles: tuple[str, ...] = ("nurse",)) -> None:
    """Sign in through the form; later posts carry the session's token as htmx would (a header)."""
    response = c.post("/login", data={"sub": sub, "role": list(roles), "next": "/worklist",
                                      "csrf_token": login_token(c)})
    assert response.status_code == 303, response.text
    c.headers[csrf.HEADER] = session_token(c)
