"""The registry page in Chromium, at 1280 and 390 px: reached from the menu, the demo centre's
charts beside the consortium with each chart's table, and a CSV download."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from services.dashboard.demo import DEMO_CENTER
from tests.browser.conftest import SCREENSHOTS, fits_the_width, sign_in


def test_the_registry_compares_a_centre_with_the_consortium(sized_page: Any) -> None:
    page = sized_page
    sign_in(page, "omar.oncologist", "oncologist", start="/patients")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Reports").click()
    page.wait_for_url("**/reports")
    expect(page.get_by_role("heading", level=1)).to_have_text("Registry")
    expect(page.get_by_test_id("pump-report")).to_contain_text(DEMO_CENTER)
    # the demo's refills (up to 38 days old) in a period of their own: the default period's
    # report may have been kept from before the demo was seeded
    today = datetime.now(UTC).date()
    start = (today.replace(day=1) - timedelta(days=70)).strftime("%Y-%m")
    page.get_by_label("Centre").select_option(DEMO_CENTER)
    page.get_by_label("From (month)").fill(start)
    page.get_by_label("To (month)").fill(today.strftime("%Y-%m"))
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(f"**/reports?center={DEMO_CENTER}*")
    expect(page.get_by_role("heading", level=1)).to_contain_text(
        f"{DEMO_CENTER} beside the consortium")
    charts = page.get_by_test_id("report-chart")
    expect(charts).to_have_count(4)
    expect(charts.first).to_be_visible()
    expect(page.get_by_role("img", name="Refills on time (inside the window)")).to_have_count(1)
    table = page.get_by_test_id("report-table").first
    expect(table.locator("thead th")).to_have_text(["Month", DEMO_CENTER, "Consortium"])
    expect(table.locator("tbody tr").first).to_be_visible()
    expect(page.get_by_test_id("refill-report").locator(f"tr[data-center='{DEMO_CENTER}']").first
           ).to_be_visible()
    link = page.locator("#h-refills ~ p").get_by_role("link", name="Download CSV")
    href = link.get_attribute("href") or ""
    assert href.startswith(f"/reports/refills.csv?center={DEMO_CENTER}")
    with page.expect_download() as download:
        link.click()
    header = Path(download.value.path()).read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("center,month,refills_done"), header
    fits_the_width(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"reports-{page.viewport_size['width']}.png"),
                    full_page=True)
