"""CSRF in real Chromium: a page on another port of the same host (same site, another origin)
auto-submits forms at the dashboard while the victim is signed in; nothing may change."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from shared.auth import mint_token
from tests.browser.conftest import sign_in, unique
from tests.browser.system import RunningSystem
from tests.doubles import LocalHttpServer, QuietHandler


class Attacker:
    """A tiny web server on port 0 of 127.0.0.1 serving auto-submitting forms."""

    def __init__(self) -> None:
        self.pages: dict[str, bytes] = {}
        pages = self.pages

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server hook
                body = pages.get(self.path, b"not found")
                self.send_response(200 if self.path in pages else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = LocalHttpServer(Handler)
        self.url = self._server.url

    def auto_post(self, name: str, action: str, fields: dict[str, str]) -> str:
        """Serve a page that posts these fields to `action` as soon as it loads; its URL."""
        inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in fields.items())
        self.pages[f"/{name}"] = (
            f'<!doctype html><title>You won a prize</title><form method="post" '
            f'action="{html.escape(action)}">{inputs}</form>'
            "<script>document.forms[0].submit()</script>").encode()
        return f"{self.url}/{name}"

    def stop(self) -> None:
        self._server.close()


@pytest.fixture
def attacker(system: RunningSystem) -> Iterator[Attacker]:
    server = Attacker()
    assert server.url.split(":")[1] == system.dashboard_url.split(":")[1]  # the same host
    try:
        yield server
    finally:
        server.stop()


def session_cookie(page: Any) -> str | None:
    return next((c["value"] for c in page.context.cookies() if c["name"] == "hai_session"), None)


def submit_from(page: Any, url: str, target: str) -> int:
    """Open the attacker's page; the status the dashboard answered its forged post with."""
    with page.expect_response(lambda r: r.url == target and r.request.method == "POST") as answer:
        page.goto(url)
    status: int = answer.value.status
    return status


def test_a_cross_origin_page_cannot_register_a_pump_as_the_signed_in_admin(
        page: Any, system: RunningSystem, attacker: Attacker) -> None:
    sign_in(page, "ada.admin", "admin", start="/stock")
    before = session_cookie(page)
    serial = unique("CSRF")
    target = f"{system.dashboard_url}/stock/register"
    url = attacker.auto_post("register", target,
                             {"udi": f"(01)00812345000016(17)301231(10)LOT-X(21){serial}"})
    status = submit_from(page, url, target)
    admin = {"Authorization": f"Bearer {mint_token('t', ['admin'], secret=system.settings.jwt_secret)}"}
    pump = httpx.get(f"{system.settings.inventory_url}/v1/pumps/{quote(serial)}", headers=admin)
    assert pump.status_code == 404, f"the forged post registered pump {serial}"
    assert status == 403 and page.get_by_test_id("csrf-refused").is_visible()
    assert session_cookie(page) == before


def test_a_cross_origin_page_cannot_sign_the_victim_in_as_someone_else(
        page: Any, system: RunningSystem, attacker: Attacker) -> None:
    sign_in(page, "ada.admin", "admin")
    before = session_cookie(page)
    # the attacker's own valid token, to make the victim work (and record) as the attacker
    theirs = mint_token("mallory", ["admin"], secret=system.settings.jwt_secret)
    target = f"{system.dashboard_url}/login"
    url = attacker.auto_post("login", target, {"token": theirs, "next": "/worklist"})
    status = submit_from(page, url, target)
    assert session_cookie(page) == before, "the forged sign-in replaced the victim's session"
    assert status == 403
    page.goto("/worklist")
    assert page.get_by_test_id("user").inner_text() == "ada.admin"
