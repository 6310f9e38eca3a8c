"""axe-core (bundled by axe-playwright-python) finds no violation on any dashboard page, at
1280×800 and at 390×844; a screenshot of each page at each width goes to build/screenshots/."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.browser.conftest import SCREENSHOTS, VIEWPORTS, call, open_page, sign_in
from tests.browser.system import RunningSystem

# every page, with a `{name}` for an id the running demo gives (see `ids` below)
PAGES = (
    "/login",
    "/worklist",
    "/refill?pump=DEMO-SN-0004",
    "/pumps/DEMO-SN-0002",
    "/pumps/DEMO-SN-0002/refills/{refill}/entered-in-error",  # a refill's void, its confirmation
    "/alerts",
    "/alerts/{alert}",
    "/alerts/{alert}/resolve",
    "/stock",
    "/recall",
    "/deliveries",
    "/deliveries/{delivery}",
    "/patients",
    "/patients/DEMO-0003",
    "/therapies/{therapy}",
    "/devices/DEMO-SN-0103",
    "/devices/DEMO-SN-0104",
    "/devices/DEMO-SN-0101",
    "/reports",
    "/reports?center=DEMO-CENTER",
    "/no-such-page",  # the 404 page, with the menu of the signed-in user
)


@pytest.fixture(scope="module")
def ids(shared_system: RunningSystem) -> dict[str, str]:
    """The ids of one alert, one delivery, one therapy and one refill of the demo (alerts come
    from events and sweeps: wait for the first)."""
    deadline = time.monotonic() + 60
    alerts: list[Any] = []
    while not alerts and time.monotonic() < deadline:
        alerts = call(shared_system, "alerts", "GET", "/v1/alerts")["items"]
        if not alerts:
            time.sleep(0.5)
    assert alerts, "no alert raised by the demo within a minute"
    delivery = call(shared_system, "scheduling", "GET", "/v1/deliveries")["items"][0]
    therapy = call(shared_system, "scheduling", "GET", "/v1/therapies",
                   params={"patient_mrn": "DEMO-0003"})["items"][0]
    refill = call(shared_system, "scheduling", "GET", "/v1/refills",
                  params={"pump_serial": "DEMO-SN-0002"})["items"][0]
    # the abnormal flow's alert, with the most to show (its pages), when it is there already
    alert = next((a for a in alerts if a.get("pump_serial") == "DEMO-SN-0002"), alerts[0])
    return {"alert": alert["id"], "delivery": delivery["id"], "therapy": therapy["id"],
            "refill": refill["id"]}


@pytest.fixture(scope="module", params=sorted(VIEWPORTS), ids=lambda w: f"{w}px")
def admin_page(request: pytest.FixtureRequest, browser: Any,
               shared_system: RunningSystem) -> Iterator[Any]:
    """One signed-in page per width, shared by the pages checked at that width. axe is injected
    by script, hence CSP bypassed here (the pages' own CSP is checked by the other tests)."""
    with open_page(browser, shared_system, VIEWPORTS[request.param], None, bypass_csp=True) as tab:
        sign_in(tab, "ada.admin", "admin", start="/worklist")
        yield tab


@pytest.mark.parametrize("path", PAGES)
def test_no_axe_violation(admin_page: Any, ids: dict[str, str], path: str) -> None:
    page = admin_page
    url = path.format(**ids)
    if path == "/login":
        page.context.clear_cookies()
    page.goto(url)
    page.wait_for_load_state("load")
    results = Axe().run(page)
    width = page.viewport_size["width"]
    slug = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "home"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"a11y-{width}-{slug}.png"), full_page=True)
    if path == "/login":
        sign_in(page, "ada.admin", "admin", start="/worklist")
    assert results.violations_count == 0, results.generate_report()
