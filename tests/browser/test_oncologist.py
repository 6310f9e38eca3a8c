"""The oncologist in Chromium: a patient registered and weighed, a therapy started on the
implanted pump, the next order's FUDR amount and basis before it goes, a dose refused outside
the hard limits with the reason in words, then paused, resumed and stopped."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from services.dashboard.demo import INTERA_GTIN, udi
from shared.clock import SystemClock
from tests.browser.conftest import call, fits_the_width, main_page_shot, sign_in, unique
from tests.browser.system import RunningSystem


def test_the_oncologist_finds_patients(sized_page: Any) -> None:
    page = sized_page
    sign_in(page, "omar.oncologist", "oncologist", start="/patients")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link")).to_have_text(["Alerts", "Patients", "Reports"])
    page.get_by_label("Name or MRN").fill("casey")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("table[data-testid=patients] tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("DEMO-0003")
    fits_the_width(page)
    main_page_shot(page, "oncologist")


def _implanted_pump(system: RunningSystem, mrn: str) -> str:
    serial = unique("ONC")
    expiry = SystemClock().now().replace(year=SystemClock().now().year + 2)
    call(system, "inventory", "POST", "/v1/pumps", role="biomed",
         json={"udi": udi(INTERA_GTIN, expiry, "ONC-LOT", serial)})
    call(system, "inventory", "POST", f"/v1/pumps/{serial}/implant", role="biomed",
         json={"patient_mrn": mrn, "center": "DEMO-CENTER",
               "implanted_at": SystemClock().now().isoformat()})
    return serial


def test_register_weigh_start_a_therapy_and_see_the_next_order(page: Any,
                                                                system: RunningSystem) -> None:
    sign_in(page, "omar.oncologist", "oncologist", start="/patients")
    mrn = unique("ONC")
    form = page.get_by_test_id("patient-form")
    form.get_by_label("MRN").fill(mrn)
    form.get_by_label("Given name").fill("Olga")
    form.get_by_label("Family name").fill("Testpatient")
    form.get_by_label("Date of birth").fill("1970-03-04")
    form.get_by_label("Weight (kg)").fill("-70")
    form.get_by_label("Centre").fill("DEMO-CENTER")
    form.get_by_role("button", name="Register patient").click()
    expect(page.locator("#weight_kg-error")).to_have_text(re.compile("more than zero"))
    page.get_by_test_id("patient-form").get_by_label("Weight (kg)").fill("70")
    page.get_by_role("button", name="Register patient").click()
    expect(page.get_by_role("status")).to_contain_text("Patient registered.")
    expect(page.get_by_test_id("patient-facts")).to_contain_text("1970-03-04")
    serial = _implanted_pump(system, mrn)
    page.get_by_label("Weight (kg)").first.fill("80")
    page.get_by_role("button", name="Save weight and height").click()
    expect(page.get_by_test_id("weight")).to_have_text("80.0 kg")
    therapy = page.get_by_test_id("therapy-form")
    therapy.get_by_label("Implanted pump").fill(serial)
    therapy.get_by_label("FUDR dose (mg/kg/day)").fill("0.1")
    therapy.get_by_label("Fill volume (mL)").fill("30")
    # scheduling learns of the implant from inventory's event: the first try may come too soon
    for _ in range(20):
        page.get_by_role("button", name="Start therapy").click()
        if page.get_by_test_id("therapy-status").count():
            break
        page.wait_for_timeout(500)
    expect(page.get_by_test_id("therapy-status")).to_have_text("active")
    next_order = page.get_by_test_id("next-order")
    # 0.1 mg/kg/day x 80 kg x 30 mL / 1.0 mL/day
    expect(next_order).to_contain_text("Floxuridine (FUDR) 240.0 mg")
    expect(next_order).to_contain_text("basis: 0.1 mg/kg/day x 80 kg x 30 mL / 1.0 mL/day")
    # beyond the hard limit: refused whatever the reason, said in words beside the field
    page.get_by_label("FUDR (mg/kg/day)").fill("3")
    page.get_by_label("Override reason (needed outside the label range)").fill("tumour board")
    page.get_by_role("button", name="Save dose").click()
    expect(page.locator("#fudr_mg_per_kg_day-error")).to_contain_text(
        "outside the hard limit of 0.05–1 mg/kg/day, which no override passes")
    expect(next_order).to_contain_text("240.0 mg")
    # outside the label range with the oncologist's reason: accepted, the next order follows
    page.get_by_label("FUDR (mg/kg/day)").fill("0.7")
    page.get_by_label("Override reason (needed outside the label range)").fill("tumour board 12/1")
    page.get_by_role("button", name="Save dose").click()
    expect(page.get_by_role("status")).to_contain_text("Dose saved.")
    expect(next_order).to_contain_text("Floxuridine (FUDR) 1680.0 mg")
    # pause needs a reason; then resume and stop
    page.get_by_role("button", name="Pause therapy").click()
    expect(page.locator("#reason-error")).to_be_visible()
    page.get_by_label("Reason (needed to pause or stop)").fill("neutropenia")
    page.get_by_role("button", name="Pause therapy").click()
    expect(page.get_by_test_id("therapy-status")).to_have_text("paused")
    page.get_by_role("button", name="Resume therapy").click()
    expect(page.get_by_test_id("therapy-status")).to_have_text("active")
    page.get_by_label("Reason (needed to pause or stop)").fill("course complete")
    page.get_by_role("button", name="Stop therapy (final)").click()
    expect(page.get_by_test_id("confirm")).to_contain_text("course complete")
    expect(page.get_by_test_id("therapy-status")).to_have_text("active")  # nothing sent yet
    page.get_by_role("button", name="Confirm: stop therapy").click()
    expect(page.get_by_test_id("therapy-status")).to_have_text("stopped")
    expect(page.get_by_test_id("dose-form")).to_have_count(0)
    expect(page.get_by_test_id("no-order")).to_be_visible()
