"""The pharmacist in Chromium: the open orders, late ones first, and an order taken from
requested to dispatched through scheduling's HTTP twin of the pharmacy queue."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from services.dashboard.demo import DEMO_CENTER
from tests.browser.conftest import call, fits_the_width, main_page_shot, sign_in
from tests.browser.system import RunningSystem

CHEMO_MRN = "DEMO-0003"  # demo: a FUDR therapy whose chemo fill is within the pharmacy lead time


def test_the_pharmacist_sees_the_open_orders_with_patient_drugs_and_basis(sized_page: Any) -> None:
    page = sized_page
    sign_in(page, "pia.pharmacist", "pharmacist", start="/deliveries")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link")).to_have_text(["Deliveries", "Reports"])
    order = page.locator("li.order").filter(has_text=CHEMO_MRN).first
    expect(order).to_contain_text("Demopatient, Casey")
    expect(order).to_contain_text("born 1960-01-01")
    expect(order).to_contain_text("DEMO-SN-0003")
    expect(order).to_contain_text(re.compile(r"Floxuridine \(FUDR\) [\d.]+ mg"))
    expect(order).to_contain_text("mg/kg/day x")
    expect(order).to_contain_text(re.compile(r"Heparin [\d.]+ units"))
    fits_the_width(page)
    main_page_shot(page, "pharmacist")


@pytest.mark.own_system  # moves the demo's order on
def test_an_order_goes_from_requested_to_dispatched_with_its_history(
        page: Any, system: RunningSystem) -> None:
    # the demo centre keeps India's time (UTC+05:30, no clock change): the beyond-use time is
    # typed and shown in it, and scheduling gets its UTC instant
    call(system, "scheduling", "PUT", f"/v1/centers/{DEMO_CENTER}/settings",
         json={"time_zone": "Asia/Kolkata"})
    sign_in(page, "pia.pharmacist", "pharmacist", start="/deliveries")
    page.locator("li.order").filter(has_text=CHEMO_MRN).first.get_by_role(
        "link", name=re.compile("^Open order")).click()
    expect(page.get_by_test_id("order-status")).to_have_text("requested")
    expect(page.get_by_test_id("order-facts")).to_contain_text("Demopatient, Casey")
    page.get_by_role("button", name="Accept the order").click()
    expect(page.get_by_role("status")).to_contain_text("Order marked accepted.")
    expect(page.get_by_test_id("order-status")).to_have_text("accepted")
    stale = page.context.new_page()  # the same order left open in a second tab
    stale.goto(page.url)
    # compounded without a lot: the error stands beside the field, nothing is recorded
    page.get_by_label("Beyond-use date and time (local time, Asia/Kolkata)").fill("2099-01-01T12:00")
    page.get_by_role("button", name="Record compounded").click()
    expect(page.locator("#lot-error")).to_have_text(re.compile("lot number"))
    expect(page.get_by_label("Lot of the compounded bag")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("order-status")).to_have_text("accepted")
    page.get_by_label("Lot of the compounded bag").fill("PH-LOT-7")
    page.get_by_role("button", name="Record compounded").click()
    expect(page.get_by_test_id("order-status")).to_have_text("compounded")
    expect(page.get_by_test_id("order-facts")).to_contain_text("PH-LOT-7")
    expect(page.get_by_test_id("beyond-use")).to_have_text("2099-01-01 12:00 IST (UTC+05:30)")
    order_id = page.url.split("/deliveries/")[1].split("?")[0]
    stored = call(system, "scheduling", "GET", f"/v1/deliveries/{order_id}")
    assert stored["beyond_use_at"].replace("+00:00", "Z").startswith("2099-01-01T06:30:00")
    page.get_by_role("button", name="Record dispatched").click()
    expect(page.get_by_test_id("order-status")).to_have_text("dispatched")
    history = page.get_by_test_id("order-history")
    expect(history.locator("li")).to_have_count(4)
    for status in ("requested", "accepted", "compounded", "dispatched"):
        expect(history).to_contain_text(status)
    expect(page.get_by_test_id("no-steps")).to_be_visible()
    # an old step submitted from the stale tab: refused in words, the order stays dispatched
    stale.get_by_label("Lot of the compounded bag").fill("PH-LOT-8")
    stale.get_by_label("Beyond-use date and time (local time, Asia/Kolkata)").fill("2099-01-01T12:00")
    stale.get_by_role("button", name="Record compounded").click()
    expect(stale.get_by_role("alert")).to_contain_text("Not applied")
    expect(stale.get_by_test_id("order-status")).to_have_text("dispatched")
    expect(stale.get_by_test_id("order-history")).to_contain_text("not applied")
