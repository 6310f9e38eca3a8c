"""Browser tests: the real system in one child process, seeded with the demo, driven in Chromium."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from services.dashboard.demo import seed
from tests import services as svc
from tests.browser.system import ROOT, RunningSystem

SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "own_system: the test changes the demo's data, so it "
                            "runs on a system of its own (the others share one and only add "
                            "data of their own)")


@contextmanager
def seeded_system(workdir: Path, **env_overrides: str) -> Iterator[RunningSystem]:
    """Inventory, scheduling, alerts and the dashboard on free ports, with the demo seeded
    (`env_overrides`: HAI_* settings of this system's own)."""
    running = RunningSystem.start(workdir, **env_overrides)
    try:
        seed(running.settings)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def shared_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    """The system the tests that leave the demo's data as it is share."""
    with seeded_system(tmp_path_factory.mktemp("browser-system")) as running:
        yield running


@pytest.fixture
def system(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningSystem]:
    """The shared seeded system, or a freshly seeded one for a test marked `own_system`:
    no test reads what another test changed."""
    if request.node.get_closest_marker("own_system") is None:
        yield request.getfixturevalue("shared_system")
        return
    with seeded_system(tmp_path / "own-system") as running:
        yield running


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright."""
    svc.need(svc.chromium_available(), f"Chromium at {svc.CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=svc.CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


WIDE = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
VIEWPORTS = {"1280": WIDE, "390": PHONE}


@contextmanager
def open_page(browser: Any, system: RunningSystem, viewport: dict[str, int], shot: str | None,
              **context_options: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) at this size; a screenshot named `shot` at the end,
    and no error in the browser's console."""
    context = browser.new_context(viewport=viewport, base_url=system.dashboard_url,
                                  **context_options)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    # a blocked script (CSP) or an htmx failure shows up as a console error; pages answering
    # 4xx on purpose (a form with errors) log "Failed to load resource", checked by type below
    tab.on("console", lambda msg: errors.append(msg.text)
           if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
    tab.on("response", lambda r: errors.append(f"{r.status} {r.url}")
           if r.status >= 400 and r.request.resource_type != "document" else None)
    yield tab
    if shot:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(SCREENSHOTS / f"{shot}.png"), full_page=True)
    context.close()
    assert not errors, f"errors in the browser console: {errors}"


@pytest.fixture
def page(browser: Any, system: RunningSystem, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (no cookies) at tablet-landscape size; screenshot at the end."""
    with open_page(browser, system, {"width": 1024, "height": 768}, request.node.name) as tab:
        yield tab


@pytest.fixture(params=sorted(VIEWPORTS), ids=lambda w: f"{w}px")
def sized_page(browser: Any, system: RunningSystem,
               request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page at 1280×800 and again at 390×844; screenshot at the end."""
    with open_page(browser, system, VIEWPORTS[request.param], request.node.name) as tab:
        yield tab


def main_page_shot(page: Any, role: str) -> None:
    """A screenshot of a role's main page as it is now, named by role and width."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"]
    page.screenshot(path=str(SCREENSHOTS / f"role-{role}-{width}.png"), full_page=True)


def fits_the_width(page: Any) -> None:
    """The page does not scroll sideways at its width."""
    width = page.viewport_size["width"]
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"the page scrolls sideways at {width}px ({scroll}px)"


def sign_in(page: Any, user: str, *roles: str, start: str = "/worklist") -> None:
    """Go to a page, land on the sign-in form, pick a demo user and roles, come back."""
    page.goto(start)
    page.wait_for_url("**/login?next=*")
    page.select_option("#sub", user)
    for box in page.locator("input[name=role]").all():
        box.set_checked(box.get_attribute("value") in roles)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{start}")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6].upper()}"



def call(system: RunningSystem, service: str, method: str, path: str, *, role: str = "admin",
         **kwargs: Any) -> Any:
    """One API call of the running system as a user with this role (for a test's own data)."""
    import httpx

    from shared.auth import mint_token

    token = mint_token(f"test.{role}", [role], secret=system.settings.jwt_secret)
    answer = httpx.request(method, f"{system.settings.service_url(service)}{path}",
                           headers={"Authorization": f"Bearer {token}"}, timeout=10, **kwargs)
    assert answer.status_code < 400, answer.text
    return answer.json() if answer.content else None
