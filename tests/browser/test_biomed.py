"""Biomed in Chromium: a pump quarantined, released and retired with a reason and a confirmation
step; an implant; an expired unit flagged at intake and never offered for implant; a recall
confirmed and listed with what it touched."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from services.dashboard.demo import EXPIRED_SERIAL, INTERA_GTIN, QUARANTINED_SERIAL
from tests.browser.conftest import call, fits_the_width, main_page_shot, sign_in, unique
from tests.browser.system import RunningSystem


def _register(page: Any, serial: str, *, expiry: str = "301231", lot: str = "LOT-B1") -> None:
    page.goto("/stock")
    page.get_by_label("UDI (scan the package barcode)").fill(
        f"(01){INTERA_GTIN}(17){expiry}(10){lot}(21){serial}")
    page.get_by_role("button", name="Register pump").click()
    expect(page.get_by_test_id("registered")).to_contain_text(serial)


def _move(page: Any, action: str, button: str, **fields: str) -> None:
    form = page.locator(f"form[data-action={action}]")
    for label, value in fields.items():
        form.get_by_label(label).fill(value)
    form.get_by_role("button", name=button).click()


def test_biomed_sees_stock_with_the_demo_quarantined_and_expired_pumps(sized_page: Any) -> None:
    page = sized_page
    sign_in(page, "bea.biomed", "biomed", start="/stock")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link")).to_have_text(["Stock", "Recall", "Reports"])
    expect(page.locator(f"tr[data-serial={QUARANTINED_SERIAL}]")).to_contain_text("quarantined")
    expect(page.locator(f"tr[data-serial={EXPIRED_SERIAL}]")).to_contain_text("expired")
    fits_the_width(page)
    main_page_shot(page, "biomed")


def test_quarantine_release_and_retire_with_reason_and_confirmation(page: Any) -> None:
    sign_in(page, "bea.biomed", "biomed", start="/stock")
    serial = unique("BIO")
    _register(page, serial)
    page.get_by_test_id("registered").get_by_role("link", name=serial).click()
    expect(page.get_by_test_id("device-status")).to_have_text("in stock")
    # no reason: the error beside the field, nothing done
    _move(page, "quarantine", "Quarantine…")
    expect(page.locator("#quarantine-reason-error")).to_have_text(re.compile("Say why"))
    stale = page.context.new_page()
    stale.goto(f"/devices/{serial}")
    _move(stale, "quarantine", "Quarantine…", Reason="cracked housing")
    _move(page, "quarantine", "Quarantine…", Reason="cracked housing")
    confirm = page.get_by_test_id("confirm")
    expect(confirm).to_contain_text("cracked housing")
    expect(page.get_by_test_id("device-status")).to_have_text("in stock")  # not yet
    confirm.get_by_role("button", name="Confirm: quarantine").click()
    expect(page.get_by_test_id("device-status")).to_have_text("quarantined")
    expect(page.get_by_test_id("device-history")).to_contain_text("cracked housing")
    # the same confirmation left open in a second tab, submitted again: refused in words
    stale.get_by_test_id("confirm").get_by_role("button", name="Confirm: quarantine").click()
    expect(stale.get_by_role("alert")).to_contain_text("Not done")
    expect(stale.get_by_test_id("device-status")).to_have_text("quarantined")
    stale.close()
    _move(page, "release", "Release to stock…")
    page.get_by_test_id("confirm").get_by_role("button", name="Confirm: release to stock").click()
    expect(page.get_by_test_id("device-status")).to_have_text("in stock")
    _move(page, "retire", "Retire…", Reason="end of life")
    page.get_by_test_id("confirm").get_by_role("button", name="Confirm: retire").click()
    expect(page.get_by_test_id("device-status")).to_have_text("retired")
    expect(page.locator("form[data-action]")).to_have_count(0)


def test_implant_then_explant(page: Any) -> None:
    sign_in(page, "bea.biomed", "biomed", start="/stock")
    serial = unique("IMP")
    _register(page, serial)
    page.goto(f"/devices/{serial}")
    _move(page, "implant", "Record implant…", **{"Patient MRN": unique("MRN"),
                                                "Centre": "DEMO-CENTER"})
    page.get_by_test_id("confirm").get_by_role("button", name="Confirm: record implant").click()
    expect(page.get_by_test_id("device-status")).to_have_text("implanted")
    _move(page, "explant", "Record explant…", Reason="infection")
    page.get_by_test_id("confirm").get_by_role("button", name="Confirm: record explant").click()
    expect(page.get_by_test_id("device-status")).to_have_text("explanted")


def test_an_expired_unit_is_flagged_at_intake_and_cannot_be_implanted(page: Any) -> None:
    sign_in(page, "bea.biomed", "biomed", start="/stock")
    serial = unique("EXP")
    _register(page, serial, expiry="200101")
    expect(page.get_by_test_id("registered-expired")).to_contain_text("can never be implanted")
    page.goto(f"/devices/{serial}")
    expect(page.get_by_test_id("expired")).to_be_visible()
    expect(page.locator("form[data-action=implant]")).to_have_count(0)
    expect(page.get_by_test_id("no-implant")).to_be_visible()
    # a form posted anyway (an old tab): refused in words, the pump stays in stock
    page.evaluate("""serial => {
        const f = document.querySelector('form[data-action=quarantine]');
        f.action = '/devices/' + serial + '/implant';
        f.querySelector('[name=reason]').name = 'patient_mrn';
        for (const [k, v] of [['center', 'DEMO-CENTER'], ['at', '2026-01-01T10:00']]) {
            const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v;
            f.appendChild(i);
        }
        f.querySelector('[name=patient_mrn]').value = 'MRN-X';
        f.submit();
    }""", serial)
    expect(page.get_by_role("alert")).to_contain_text("cannot be implanted")
    expect(page.get_by_test_id("device-status")).to_have_text("in stock")


def test_a_recall_is_confirmed_then_listed_with_what_it_touched(page: Any,
                                                                system: RunningSystem) -> None:
    sign_in(page, "bea.biomed", "biomed", start="/stock")
    lot = unique("RCL")
    serial = unique("RCS")
    _register(page, serial, lot=lot)
    page.goto("/recall")
    models = call(system, "inventory", "GET", "/v1/pump-models")["items"]
    page.get_by_label("Model").select_option(
        next(m["code"] for m in models if m["gtin"] == INTERA_GTIN))
    page.get_by_label("Lot numbers (separated by commas or spaces)").fill(lot)
    page.get_by_label("Reason").fill("FSN-2026-7")
    page.get_by_role("button", name="Issue recall…").click()
    confirm = page.get_by_test_id("recall-confirm")
    expect(confirm).to_contain_text("1 pump(s) in stock will be quarantined")
    confirm.get_by_role("button", name="Confirm: issue the recall").click()
    expect(page.get_by_test_id("recall-result")).to_contain_text(serial)
    past = page.get_by_test_id("past-recalls")
    expect(past.locator("li").filter(has_text=lot)).to_contain_text(serial)
    expect(past.locator("li").filter(has_text=lot)).to_contain_text("FSN-2026-7")
