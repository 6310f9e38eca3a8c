"""The nurses' dashboard in real Chromium against the running system (seeded with the demo)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from services.dashboard.demo import seed
from tests.browser.conftest import sign_in, unique
from tests.browser.system import RunningSystem

OVERDUE_PUMP = "DEMO-SN-0001"  # demo: saline due 16 days ago, projected empty within hours
REFILL_PUMP = "DEMO-SN-0004"  # demo: one fill 12.5 days ago, no measured flow yet


def test_sign_in_and_see_the_overdue_pump_first(page: Any) -> None:
    sign_in(page, "nora.nurse", "nurse")
    expect(page.get_by_test_id("user")).to_have_text("nora.nurse")
    first = page.locator("table.worklist tbody tr").first
    expect(first).to_have_attribute("data-serial", OVERDUE_PUMP)
    expect(first).to_contain_text("Overdue")
    expect(first).to_contain_text("Near empty")
    chemo = page.locator("tr[data-serial='DEMO-SN-0003']")
    expect(chemo).to_contain_text(re.compile(r"requested|accepted|compounded|dispatched|delivered"))
    expect(page.locator(".verify")).to_contain_text("Verify")


@pytest.mark.own_system  # changes the demo's data
def test_record_a_refill_and_see_the_new_point_on_the_chart(page: Any) -> None:
    sign_in(page, "nora.nurse", "nurse", start=f"/pumps/{REFILL_PUMP}")
    chart = page.get_by_test_id("flow-chart")
    expect(chart).to_have_attribute("data-points", "0")
    page.get_by_role("link", name="Record refill").last.click()
    expect(page.get_by_label("Pump serial number")).to_have_value(REFILL_PUMP)
    page.get_by_label(re.compile("I have checked this patient")).check()  # two identifiers
    # an impossible residual (above the 30 mL filled last time) comes back beside its field
    page.get_by_label("Residual volume withdrawn (mL)").fill("45")
    page.get_by_label("Fill volume (mL)").fill("30")
    page.get_by_role("button", name="Save refill").click()
    expect(page.locator("#residual_volume_ml-error")).to_be_visible()
    expect(page.get_by_label("Residual volume withdrawn (mL)")).to_have_attribute("aria-invalid", "true")
    # 12.5 days at 1 mL/day leave 17.5 mL
    page.get_by_label("Residual volume withdrawn (mL)").fill("17.5")
    page.get_by_role("button", name="Save refill").click()
    result = page.get_by_test_id("refill-result")
    expect(result).to_be_visible()
    expect(page.get_by_test_id("measured-flow")).to_contain_text("mL/day")
    expect(page.get_by_test_id("deviation")).to_contain_text("%")
    page.get_by_role("link", name="See the flow chart").click()
    expect(page.get_by_test_id("flow-chart")).to_have_attribute("data-points", "1")
    expect(page.locator("svg circle.point")).to_have_count(1)


@pytest.mark.own_system  # changes the demo's data
def test_acknowledge_an_alert_in_one_click(page: Any) -> None:
    sign_in(page, "otto.oncall", "oncall", start="/alerts")
    # alerts come from events and sweeps: the list refreshes itself until one is there
    row = page.locator("li.alert-card[data-kind='flow_abnormal']").first
    expect(row).to_be_visible(timeout=30_000)
    expect(row.locator(".status")).to_have_text("firing")
    row.get_by_role("button", name=re.compile("^Acknowledge")).click()
    expect(page.get_by_role("status")).to_contain_text("Alert acknowledged.")
    acknowledged = page.locator("li.alert-card[data-kind='flow_abnormal']").first
    expect(acknowledged.locator(".status")).to_have_text("acknowledged")
    expect(acknowledged.get_by_test_id("acknowledged")).to_contain_text("otto.oncall")


@pytest.mark.own_system  # changes the demo's data
def test_the_on_call_link_opens_the_alert_after_sign_in(page: Any, system: Any) -> None:
    sign_in(page, "otto.oncall", "oncall", start="/alerts")
    link = page.locator("li.alert-card[data-kind='refill_overdue'] .alert-title a").first
    expect(link).to_be_visible(timeout=30_000)
    href = link.get_attribute("href")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")
    sign_in(page, "otto.oncall", "oncall", start=href)
    expect(page.get_by_test_id("alert-facts")).to_contain_text(OVERDUE_PUMP)
    page.get_by_label(re.compile("^Resolution")).fill("patient called in for refill today")
    page.get_by_role("button", name="Resolve").click()
    expect(page.get_by_test_id("alert-status")).to_have_text("resolved")


def test_register_a_pump_by_scanning_its_udi(page: Any) -> None:
    sign_in(page, "bea.biomed", "biomed", start="/stock")
    before = int(page.locator("strong[data-status='in_stock']").inner_text())
    serial = unique("SCAN")
    scan = page.get_by_label("UDI (scan the package barcode)")
    expect(scan).to_be_focused()
    # a scanner's raw form: the GS separator typed as <GS>, then Enter
    scan.press_sequentially(f"01008123450000161730123110LOT-B7<GS>21{serial}")
    scan.press("Enter")
    expect(page.get_by_test_id("registered")).to_contain_text(serial)
    expect(page.get_by_test_id("registered")).to_contain_text("lot LOT-B7")
    expect(page.locator("strong[data-status='in_stock']")).to_have_text(str(before + 1))
    # scanning the same box twice is refused with the reason
    printed = f"(01)00812345000016(17)301231(10)LOT-B7(21){serial}"
    page.get_by_label("UDI (scan the package barcode)").fill(printed)
    page.get_by_role("button", name="Register pump").click()
    # in plain words, not "inventory answered 409 Conflict"
    expect(page.get_by_role("alert")).to_contain_text("already registered")
    expect(page.get_by_role("alert")).not_to_contain_text("409")


def test_tablet_portrait_worklist_is_usable(page: Any) -> None:
    page.set_viewport_size({"width": 768, "height": 1024})
    sign_in(page, "nora.nurse", "nurse")
    first = page.locator("table.worklist tbody tr").first
    expect(first).to_contain_text("Overdue")
    button = first.get_by_role("link", name="Record refill")
    box = button.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 768
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 768, f"the page scrolls sideways at tablet width ({width}px)"


@pytest.mark.own_system  # the shared system holds what other tests added (a new therapy)
def test_seeding_the_demo_again_changes_nothing(system: RunningSystem) -> None:
    import httpx

    from shared.auth import mint_token

    token = mint_token("t", ["admin"], secret=system.settings.jwt_secret)
    headers = {"Authorization": f"Bearer {token}"}

    def therapies() -> int:
        answer = httpx.get(f"{system.settings.scheduling_url}/v1/therapies", headers=headers,
                           params={"limit": 500})
        return len(answer.json()["items"])

    before = therapies()
    log_size = system.log_path.stat().st_size
    statuses: list[int] = []
    real = httpx.HTTPTransport()

    class Recording(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = real.handle_request(request)
            statuses.append(response.status_code)
            return response

    seed(system.settings, transport=Recording())
    assert therapies() == before == 5
    # quiet: nothing sent again that a service refuses, so no "409 Conflict" in the log
    assert statuses and all(code < 400 for code in statuses), statuses
    with system.log_path.open("rb") as log:
        log.seek(log_size)
        added = log.read().decode(errors="replace")
    assert " 409" not in added, added[-2000:]
