"""The nurse's tasks in real Chromium, on a system whose centre keeps New York time (so every
time shown and typed is local, not UTC) and whose live pages refresh every 2 s."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import expect

from shared.auth import mint_token
from shared.contracts.vocabulary import DeliveryStatus
from tests.browser.conftest import SCREENSHOTS, seeded_system, sign_in
from tests.browser.system import RunningSystem

ZONE = "America/New_York"
OVERDUE_PUMP = "DEMO-SN-0001"  # overdue and near empty
FLOW_PUMP = "DEMO-SN-0002"  # a firing critical flow_abnormal alert (+30 %)
CHEMO_PUMP = "DEMO-SN-0003"  # FUDR: its first chemo fill's delivery is ordered
STOCK_PUMP = "DEMO-SN-0101"  # in stock
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    """The demo on a system of this module's own (its tests touch different pumps)."""
    workdir = tmp_path_factory.mktemp("nurse-system")
    with seeded_system(workdir, HAI_TIME_ZONE=ZONE, HAI_REFRESH_SECONDS="2") as running:
        yield running


def _no_sideways_scroll(page: Any, width: int) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"the page scrolls sideways at {width} px ({scroll} px wide)"


def _within(page: Any, locator: Any, width: int) -> None:
    box = locator.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, box


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "390"])
def test_the_worklist_puts_danger_first_with_its_alerts_and_refreshes_itself(
        page: Any, viewport: dict[str, int]) -> None:
    page.set_viewport_size(viewport)
    sign_in(page, "nora.nurse", "nurse")
    rows = page.locator("table.worklist tbody tr")
    expect(rows.first).to_have_attribute("data-serial", OVERDUE_PUMP)
    # the +30 % flow pump carries its critical alert (raised from events: the page refreshes
    # itself until it is there) and is sorted above everything merely due
    flow_row = page.locator(f"tr[data-serial='{FLOW_PUMP}']")
    badge = flow_row.locator("a[data-testid='row-alert'][data-severity='critical']").first
    expect(badge).to_be_visible(timeout=30_000)
    expect(badge).to_have_attribute("href", re.compile(r"^/alerts/"))
    ranks = [r.get_attribute("data-rank") for r in rows.all()]
    order = ["overdue", "near_empty", "critical_alert", "due_today", "due_soon", "later"]
    assert ranks == sorted(ranks, key=order.index), ranks
    assert flow_row.get_attribute("data-rank") in ("overdue", "near_empty", "critical_alert")
    # two identifiers for every patient: name, MRN and birth date
    first_ids = rows.first.get_by_test_id("patient-ids")
    expect(first_ids).to_contain_text("Demopatient")
    expect(first_ids).to_contain_text("MRN DEMO-0001")
    expect(first_ids).to_contain_text("born 1960-01-01")
    # the centre filter offers the known centres
    expect(page.locator("select#center option[value='DEMO-CENTER']")).to_have_count(1)
    # "as of" in local time, and the page refreshes itself
    as_of = page.get_by_test_id("as-of")
    expect(as_of).to_contain_text(re.compile(r"As of \d\d:\d\d E[SD]T"))
    before = as_of.get_attribute("data-as-of")
    expect(page.get_by_test_id("as-of")).not_to_have_attribute("data-as-of", before or "",
                                                              timeout=15_000)
    expect(page.locator("footer")).to_contain_text(ZONE)
    if viewport == PHONE:
        _no_sideways_scroll(page, PHONE["width"])
        _within(page, rows.first.get_by_role("link", name=re.compile("^Record refill")), PHONE["width"])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"nurse-worklist-{viewport['width']}.png"), full_page=True)


def _pharmacy_dispatches(system: RunningSystem) -> tuple[str, datetime]:
    """The pharmacy (its HTTP twin) accepts, compounds and dispatches the chemo pump's order."""
    settings = system.settings
    headers = {"Authorization": "Bearer " + mint_token("phil.pharmacist", ["pharmacist"],
                                                       secret=settings.jwt_secret)}
    base = settings.scheduling_url
    found = httpx.get(f"{base}/v1/deliveries", headers=headers, params={"limit": 500}).json()
    order = next(d for d in found["items"] if d["pump_serial"] == CHEMO_PUMP)
    now = datetime.now(UTC).replace(microsecond=0)
    beyond_use = now + timedelta(days=5)
    for status, extra in ((DeliveryStatus.ACCEPTED, {}),
                          (DeliveryStatus.COMPOUNDED, {"lot": "PH-LOT-7",
                                                       "beyond_use_at": beyond_use.isoformat()}),
                          (DeliveryStatus.DISPATCHED, {})):
        answer = httpx.post(f"{base}/v1/deliveries/{order['id']}/status", headers=headers,
                            json={"status": status, "at": now.isoformat(), **extra})
        assert answer.status_code == 200, answer.text
    return order["id"], beyond_use


def test_a_chemo_refill_checks_the_patient_and_the_bag_in_local_time(
        page: Any, system: RunningSystem) -> None:
    order_id, _ = _pharmacy_dispatches(system)
    sign_in(page, "nora.nurse", "nurse")
    row = page.locator(f"tr[data-serial='{CHEMO_PUMP}']")
    row.get_by_role("link", name=re.compile("^Record refill")).click()
    # what goes in: each drug with its amount and unit, the order's status, lot, beyond-use
    facts = page.get_by_test_id("delivery-facts")
    expect(facts.get_by_test_id("delivery-status")).to_have_text("dispatched")
    expect(facts).to_contain_text("PH-LOT-7")
    expect(facts.get_by_test_id("delivery-drugs")).to_contain_text(re.compile(r"\d mg"))
    expect(facts).to_contain_text(re.compile(r"E[SD]T \(UTC−0[45]:00\)"))
    check = page.get_by_test_id("patient-check")
    expect(check).to_contain_text("Demopatient")
    expect(check).to_contain_text("born 1960-01-01")
    expect(page.get_by_label(re.compile("^Performed at"))).to_be_visible()
    expect(page.locator("label[for=performed_at]")).to_contain_text(ZONE)
    local = datetime.now(UTC).astimezone(ZoneInfo(ZONE)) - timedelta(minutes=5)
    page.get_by_label(re.compile("^Performed at")).fill(local.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("Residual volume withdrawn (mL)").fill("0")
    page.get_by_label("Fill volume (mL)").fill("30")
    # the wrong bag, and the patient not confirmed: refused in plain words, nothing saved
    page.get_by_label(re.compile("^Drug order id")).fill("ORDER-OF-SOMEONE-ELSE")
    page.get_by_role("button", name="Save refill").click()
    expect(page.locator("#delivery_id-error")).to_contain_text("is not the order for this appointment")
    expect(page.locator("#patient_confirmed-error")).to_contain_text("wristband")
    # the right bag, the patient confirmed
    page.get_by_label(re.compile("^Drug order id")).fill(order_id)
    page.get_by_label(re.compile("I have checked this patient")).check()
    page.get_by_role("button", name="Save refill").click()
    result = page.get_by_test_id("refill-result")
    expect(result).to_be_visible()
    expect(page.get_by_test_id("result-patient")).to_contain_text("Demopatient, Casey")
    expect(page.get_by_test_id("result-patient")).to_contain_text("MRN DEMO-0003")
    # typed in New York time, stored in UTC, shown back in New York time with its offset
    expect(result).to_contain_text(local.strftime("%Y-%m-%d %H:%M"))
    expect(result).to_contain_text(re.compile(r"E[SD]T \(UTC−0[45]:00\)"))


def test_the_pump_page_shows_who_refilled_offers_the_void_and_prints(page: Any) -> None:
    sign_in(page, "nora.nurse", "nurse", start=f"/pumps/{OVERDUE_PUMP}")
    refills = page.get_by_test_id("refills")
    expect(refills).to_contain_text("nora.nurse")
    expect(page.get_by_test_id("void-latest")).to_have_count(1)
    expect(page.locator(".page-head").get_by_role("link", name="Record refill")).to_be_visible()
    expect(page.get_by_test_id("as-of")).to_be_visible()
    page.emulate_media(media="print")
    expect(page.locator("header.top")).to_be_hidden()
    expect(page.get_by_role("button", name="Print refill record")).to_be_hidden()
    expect(refills).to_be_visible()
    page.emulate_media(media="screen")
    # a pump in stock: no scheduling error, and no refill to record
    page.goto(f"/pumps/{STOCK_PUMP}")
    expect(page.get_by_role("heading", name=f"Pump {STOCK_PUMP}")).to_be_visible()
    expect(page.locator(".banner-error")).to_have_count(0)
    expect(page.locator(".page-head").get_by_role("link", name="Record refill")).to_have_count(0)
    expect(page.locator("main")).to_contain_text("in stock")


def test_an_unknown_page_is_a_page_with_a_way_back(page: Any) -> None:
    sign_in(page, "nora.nurse", "nurse")
    response = page.goto("/no-such-page")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    page.get_by_role("link", name="Go to the worklist").click()
    page.wait_for_url("**/worklist")
