"""The on-call clinician's task on a phone: each alert a card with its actions in reach,
resolving asks why, who acknowledged and who resolved shown as two facts."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import SCREENSHOTS, sign_in

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
RAW_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def _no_sideways_scroll(page: Any, width: int) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"the page scrolls sideways at {width} px ({scroll} px wide)"


def _in_viewport(locator: Any, viewport: dict[str, int]) -> None:
    box = locator.bounding_box()
    assert box is not None, "not laid out"
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], box


@pytest.mark.own_system  # acknowledges and resolves the demo's alerts
def test_on_a_phone_each_alert_is_a_card_acknowledged_and_resolved_with_a_reason(page: Any) -> None:
    page.set_viewport_size(PHONE)
    sign_in(page, "otto.oncall", "oncall", start="/alerts")
    card = page.locator("li.alert-card[data-kind='flow_abnormal']").first
    expect(card).to_be_visible(timeout=30_000)  # raised from events: the list refreshes itself
    cards = page.locator("li.alert-card")
    _no_sideways_scroll(page, PHONE["width"])
    for i in range(cards.count()):
        for action in cards.nth(i).locator(".card-actions button, .card-actions a").all():
            _in_viewport(action, PHONE)
    # no raw ISO timestamp in any summary
    for title in page.locator(".alert-title").all_inner_texts():
        assert not RAW_ISO.search(title), title
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "oncall-alerts-390.png"), full_page=True)

    # what is being chosen in the filter survives the list's refresh
    page.select_option("#status", "all")
    before = page.get_by_test_id("as-of").get_attribute("data-as-of")
    expect(page.get_by_test_id("as-of")).not_to_have_attribute("data-as-of", before or "",
                                                              timeout=15_000)
    expect(page.locator("#status")).to_have_value("all")
    page.select_option("#status", "open")

    card.get_by_role("button", name=re.compile("^Acknowledge")).click()
    expect(page.get_by_role("status")).to_contain_text("Alert acknowledged.")
    card = page.locator("li.alert-card[data-kind='flow_abnormal']").first
    expect(card.get_by_test_id("acknowledged")).to_contain_text("by otto.oncall")
    expect(card.get_by_test_id("resolved")).to_have_text("not yet")
    resolve = card.get_by_role("link", name=re.compile("^Resolve"))
    _in_viewport(resolve, PHONE)
    resolve.click()
    # resolving asks for the reason
    page.get_by_role("button", name="Resolve").click()
    expect(page.locator("#resolution-error")).to_contain_text("Say what was done")
    page.get_by_label(re.compile("^What was done")).fill("pump checked, flow confirmed with the surgeon")
    _no_sideways_scroll(page, PHONE["width"])
    page.get_by_role("button", name="Resolve").click()
    page.wait_for_url("**/alerts")
    page.select_option("#status", "resolved")
    page.get_by_role("button", name="Filter").click()
    done = page.locator("li.alert-card[data-kind='flow_abnormal']").first
    expect(done.get_by_test_id("acknowledged")).to_contain_text("by otto.oncall")
    expect(done.get_by_test_id("resolved")).to_contain_text("by otto.oncall")
    # its page: details as labelled fields, times local
    done.locator(".alert-title a").click()
    details = page.get_by_test_id("alert-details")
    expect(details.locator("dt").first).to_be_visible()
    assert not RAW_ISO.search(page.locator("main").inner_text())
    _no_sideways_scroll(page, PHONE["width"])


def test_at_desktop_width_the_cards_sit_side_by_side(page: Any) -> None:
    page.set_viewport_size(DESKTOP)
    sign_in(page, "otto.oncall", "oncall", start="/alerts")
    expect(page.locator("li.alert-card").first).to_be_visible(timeout=30_000)
    expect(page.locator("li.alert-card[data-kind='flow_abnormal']").first).to_be_visible(
        timeout=30_000)
    _no_sideways_scroll(page, DESKTOP["width"])
    for title in page.locator(".alert-title").all_inner_texts():
        assert not RAW_ISO.search(title), title
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "oncall-alerts-1280.png"), full_page=True)


@pytest.mark.own_system  # acknowledges a demo alert
def test_acknowledging_from_a_page_s_link_acknowledges_that_page_and_says_who(
        page: Any, system: Any) -> None:
    from services.dashboard.demo import ONCALL, DemoClient
    from shared.clock import SystemClock
    from tests.helpers import wait_until

    api = DemoClient(system.settings, SystemClock())
    try:
        def pages() -> list[dict[str, Any]]:
            alerts = api.call("alerts", "GET", "/v1/alerts", as_=ONCALL,
                              params={"kind": "flow_abnormal", "status": "firing"}).json()["items"]
            return [p for a in alerts for p in api.call(
                "alerts", "GET", "/v1/notifications", as_=ONCALL,
                params={"alert_id": a["id"]}).json()["items"] if p["sent_at"]]

        wait_until(pages, what="a flow alert's page sent", timeout_s=60)
        sent = pages()[0]
        # the nurse is no on-call member: only the link says which page she answers
        sign_in(page, "nora.nurse", "nurse", start=f"/alerts/{sent['alert_id']}?n={sent['id']}")
        page.get_by_role("button", name="Acknowledge").click()
        expect(page.get_by_test_id("alert-status")).to_have_text("acknowledged")
        receipts = page.get_by_test_id("page-receipts")
        expect(receipts).to_contain_text("by nora.nurse")
        (mine,) = [p for p in api.call("alerts", "GET", "/v1/notifications", as_=ONCALL,
                                       params={"alert_id": sent["alert_id"]}).json()["items"]
                   if p["id"] == sent["id"]]
        assert mine["status"] == "acknowledged", mine
    finally:
        api.close()
