"""The clinical story through HTTP and the queue, on the production topology (every API plus
two workers per service, PostgreSQL and RabbitMQ), with a pharmacy simulator and a webhook
receiver standing in for the pharmacy system and the on-call pagers."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from tests.doubles import PharmacySimulator, WebhookReceiver
from tests.e2e.story import setup_oncall
from tests.e2e.topology import Topology
from tests.helpers import TRANSIENT, wait_until

CENTER = "E2E-CENTER"


def gs1_check_digit(body: str) -> str:
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def _setup_oncall(system: Topology, receiver: WebhookReceiver, center: str) -> None:
    setup_oncall(system, center, receiver.url_for(f"/{center}/l1"),
                 receiver.url_for(f"/{center}/l2"))


def _register_and_implant(system: Topology, serial: str, mrn: str, center: str,
                          implanted_at: datetime) -> dict[str, Any]:
    with system.client("inventory", "biomed") as inv:
        model = inv.get("/v1/pump-models").json()["items"][0]
        expiry = (date.today() + timedelta(days=700)).strftime("%y%m%d")
        udi = f"(01){model['gtin']}(17){expiry}(10)LOT-E2E(21){serial}"
        r = inv.post("/v1/pumps", json={"udi": udi, "location": "biomed shelf"})
        assert r.status_code == 201, r.text
        r = inv.post(f"/v1/pumps/{serial}/implant", json={
            "patient_mrn": mrn, "implanted_at": implanted_at.isoformat(), "center": center,
            "surgeon": "Dr. E2E"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "implanted"
        return r.json()  # type: ignore[no-any-return]


def _patient(system: Topology, mrn: str, center: str) -> None:
    with system.client("scheduling", "nurse") as sch:
        r = sch.post("/v1/patients", json={
            "mrn": mrn, "given_name": "Testina", "family_name": "Storyteller",
            "birth_date": "1961-04-12", "weight_kg": 70, "height_cm": 165, "sex": "female",
            "center": center})
        assert r.status_code == 201, r.text


def _therapy(system: Topology, body: dict[str, Any]) -> dict[str, Any]:
    with system.client("scheduling", "oncologist") as sch:
        # scheduling learns of the implant from inventory's event: 409 until then
        r = wait_until(lambda: (lambda resp: resp if resp.status_code == 201 else None)(
                         sch.post("/v1/therapies", json=body)),
                             what="scheduling to learn the implant", timeout_s=30, ignoring=TRANSIENT)
        return r.json()  # type: ignore[no-any-return]


def test_story_from_udi_to_acknowledged_page(system: Topology, receiver: WebhookReceiver,
                                             e2e_amqp_url: str) -> None:
    now = datetime.now(UTC)
    serial, mrn = "SN-E2E-0001", "MRN-E2E-0001"
    _setup_oncall(system, receiver, CENTER)
    _patient(system, mrn, CENTER)
    pump = _register_and_implant(system, serial, mrn, CENTER, now - timedelta(days=30))
    labeled = pump["labeled_flow_ml_per_day"]

    therapy = _therapy(system, {
        "patient_mrn": mrn, "pump_serial": serial, "regimen": "fudr_alternating",
        "start_on": (now + timedelta(days=1)).date().isoformat(), "fudr_mg_per_kg_day": 0.12,
        "heparin_units": 5000, "dexamethasone_mg": 20})
    assert therapy["regimen"] == "fudr_alternating"

    # the first chemo fill is within the pharmacy lead time: an order goes out at once
    pharmacy = PharmacySimulator(e2e_amqp_url)
    orders = pharmacy.fetch_orders()
    order = next(o for o in orders if o["data"]["pump"]["serial_number"] == serial)
    data = order["data"]
    assert order["type"] == "hai.pharmacy.order.requested"
    fudr = next(d for d in data["drugs"] if d["code"] == "floxuridine")
    assert fudr["unit"] == "mg" and fudr["amount"] > 0 and "mg/kg/day" in fudr["basis"]
    order_id = data["order_id"]
    for status in ("accepted", "compounded", "dispatched", "delivered"):
        pharmacy.send_status(order_id, status)
    with system.client("scheduling", "nurse") as sch:
        delivery = wait_until(lambda: (
            lambda d: d if d["status"] == "delivered" else None)(
            sch.get(f"/v1/deliveries/{order_id}").json()),
                what="the delivery to be delivered", timeout_s=30, ignoring=TRANSIENT)
        # two workers consume the statuses, sent a few ms apart: one may overtake another, and
        # the one it overtook is recorded but not applied (an order never moves back). By the
        # pharmacy's own times the four are all there, in order
        by_time = sorted(delivery["history"], key=lambda h: datetime.fromisoformat(h["at"]))
        assert [h["status"] for h in by_time][-4:] == [
            "accepted", "compounded", "dispatched", "delivered"]

        # first chemo fill (14 days ago, documented late), then a refill with fast flow
        first_at = now - timedelta(days=14)
        r = sch.post("/v1/refills", json={
            "pump_serial": serial, "performed_at": first_at.isoformat(),
            "residual_volume_ml": 0, "fill_volume_ml": 30, "fill_type": "chemo",
            "delivery_id": order_id})
        assert r.status_code == 201, r.text
        assert r.json()["measured_flow_ml_per_day"] is None
        assert r.json()["next_appointment"]["fill_type"] == "saline"

        # 40 % above the labeled rate: (30 - residual) / 14 = 1.4 x labeled
        residual = round(30 - 1.4 * labeled * 14, 2)
        r = sch.post("/v1/refills", json={
            "pump_serial": serial, "performed_at": now.isoformat(),
            "residual_volume_ml": residual, "fill_volume_ml": 30, "fill_type": "saline"})
        assert r.status_code == 201, r.text
        refill = r.json()
        assert refill["flow_deviation_pct"] == pytest.approx(40.0, abs=0.5)
        readings = sch.get(f"/v1/pumps/{serial}/flow-readings").json()["items"]
        assert readings[-1]["refill_id"] == refill["id"]

    page = wait_until(lambda: next(
        (p for p in receiver.on(f"/{CENTER}/l1")
         if p["alert"]["kind"] == "flow_abnormal" and p["alert"]["pump_serial"] == serial), None),
             what="the level-1 page about the abnormal flow", timeout_s=30, ignoring=TRANSIENT)
    alert = page["alert"]
    assert alert["severity"] == "critical" and page["level"] == 1
    assert alert["patient_mrn"] == mrn and alert["center"] == CENTER
    assert "Testina" not in str(page) and "Storyteller" not in str(page)
    # the link names the alert, and the page (opening it marks the page seen)
    assert page["ack_url"].endswith(f"/alerts/{alert['id']}?n={page['notification_id']}")

    with system.client("alerts", "oncall", sub="dr-oncall") as alerts:
        r = alerts.post(f"/v1/alerts/{alert['id']}/ack", json={"note": "seen, calling patient"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "acknowledged" and r.json()["acknowledged_by"] == "dr-oncall"
        again = alerts.post(f"/v1/alerts/{alert['id']}/ack", json={})
        assert again.status_code == 409


def test_missed_refill_becomes_critical_and_escalates(system: Topology, receiver: WebhookReceiver):
    center = "E2E-MISSED"
    now = datetime.now(UTC)
    serial, mrn = "SN-E2E-0002", "MRN-E2E-0002"
    _setup_oncall(system, receiver, center)
    _patient(system, mrn, center)
    _register_and_implant(system, serial, mrn, center, now - timedelta(days=40))
    therapy = _therapy(system, {
        "patient_mrn": mrn, "pump_serial": serial, "regimen": "saline_maintenance",
        "start_on": (now - timedelta(days=29)).date().isoformat()})
    assert therapy["id"]
    with system.client("scheduling", "nurse") as sch:
        # filled 28 days ago: the next refill was due 14 days ago, the pump empties in ~2 days
        r = sch.post("/v1/refills", json={
            "pump_serial": serial, "performed_at": (now - timedelta(days=28)).isoformat(),
            "residual_volume_ml": 0, "fill_volume_ml": 30, "fill_type": "saline"})
        assert r.status_code == 201, r.text

    # the therapy's first appointment (due at its start, 29 days ago) is overdue too until the
    # refill completes it, and a sweep in between pages it as a warning (its reservoir is
    # unknown): the page wanted is the one of the next appointment, whose pump empties soon
    l1 = wait_until(lambda: next(
        (p for p in receiver.on(f"/{center}/l1") if p["alert"]["kind"] == "refill_overdue"
         and "empty in" in p["alert"]["summary"]), None),
             what="the critical overdue page at level 1", timeout_s=45, ignoring=TRANSIENT)
    assert l1["alert"]["severity"] == "critical"
    l2 = wait_until(lambda: next(
        (p for p in receiver.on(f"/{center}/l2") if p["alert"]["id"] == l1["alert"]["id"]), None),
            what="the escalation to level 2", timeout_s=45, ignoring=TRANSIENT)
    assert l2["level"] == 2
    with system.client("alerts", "nurse") as alerts:
        got = alerts.get(f"/v1/alerts/{l1['alert']['id']}").json()
        assert got["escalation_level"] >= 2
        notes = alerts.get("/v1/notifications", params={"alert_id": got["id"]}).json()["items"]
        assert {(n["level"], n["status"]) for n in notes} >= {(1, "sent"), (2, "sent")}


def test_no_patient_data_in_any_log_line(system: Topology) -> None:
    """This test's own patient goes through every service (accepted, refused as a duplicate,
    refused as invalid, implanted, treated, refilled, alerted on): her name, birth date and MRN
    appear in no service's log, while her pump's serial (not patient data) shows the logs were
    written as her data went through."""
    now = datetime.now(UTC)
    serial, mrn, center = "SN-E2E-LOG-1", "MRN-E2E-LOG-1", "E2E-LOG"
    given, family, born = "Loglinda", "Secretson", "1957-03-21"
    person = {"mrn": mrn, "given_name": given, "family_name": family, "birth_date": born,
              "weight_kg": 64, "center": center}
    with system.client("scheduling", "nurse") as sch:
        assert sch.post("/v1/patients", json=person).status_code == 201
        assert sch.post("/v1/patients", json=person).status_code == 409
        assert sch.post("/v1/patients", json={**person, "mrn": f"{mrn}-X",
                                             "weight_kg": -1}).status_code == 422
        assert sch.patch(f"/v1/patients/{mrn}", json={"birth_date": "not a date"}).status_code == 422
    pump = _register_and_implant(system, serial, mrn, center, now - timedelta(days=30))
    # saline fills: a chemo fill needs its dispatched bag, which is another test's story
    _therapy(system, {"patient_mrn": mrn, "pump_serial": serial, "regimen": "saline_maintenance",
                      "start_on": (now + timedelta(days=1)).date().isoformat()})
    with system.client("scheduling", "nurse") as sch:
        for performed_at, residual_ml in ((now - timedelta(days=14), 0.0),
                                          (now, round(30 - 1.4 * pump["labeled_flow_ml_per_day"]
                                                      * 14, 2))):
            r = sch.post("/v1/refills", json={
                "pump_serial": serial, "performed_at": performed_at.isoformat(),
                "residual_volume_ml": residual_ml, "fill_volume_ml": 30, "fill_type": "saline"})
            assert r.status_code == 201, r.text
    with system.client("alerts", "nurse") as alerts:
        wait_until(lambda: [
            a for a in alerts.get("/v1/alerts", params={"center": center}).json()["items"]
            if a["pump_serial"] == serial and a["kind"] == "flow_abnormal"],
                what="the flow alert about this test's pump", timeout_s=30, ignoring=TRANSIENT)
    logs = wait_until(lambda: (
        lambda found: found if all(serial in found[n] for n in ("inventory", "scheduling"))
        else None)(system.logs()),
            what="this test's pump in the inventory and scheduling logs", timeout_s=30, ignoring=TRANSIENT)
    for name, text in logs.items():
        for secret in (given, family, born, mrn):
            assert secret not in text, f"{secret!r} appears in the log of {name}"
        for line in text.splitlines():  # and a log collector can read every line
            record = json.loads(line)
            assert {"time", "level", "service", "logger", "event"} <= record.keys(), line
