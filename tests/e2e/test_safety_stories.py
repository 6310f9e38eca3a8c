"""Two safety rules as stories on the production topology (every API plus two workers per
service, PostgreSQL and RabbitMQ, a pharmacy simulator and a webhook receiver):

- a refill entered in error leaves the flow series and puts its appointments back, and the
  alerts service resolves the flow alert its reading raised, with the nurse's reason;
- a dose beyond the hard limits never reaches the pharmacy: refused at the API in plain words,
  and an order computed from a row written before the limits is refused before it is published,
  paged to the on-call as a critical `order_refused` alert, and sent once the oncologist
  corrects the dose."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.doubles import PharmacySimulator, WebhookReceiver
from tests.e2e.story import abnormal_refill, pump_on_therapy, setup_oncall
from tests.e2e.topology import Topology
from tests.helpers import wait_until

CENTER = "E2E-SAFETY"


def _alert(system: Topology, serial: str, kind: str) -> dict[str, Any] | None:
    with system.client("alerts", "nurse") as alerts:
        items = alerts.get("/v1/alerts", params={"pump_serial": serial, "kind": kind}).json()["items"]
        return alerts.get(f"/v1/alerts/{items[0]['id']}").json() if items else None


def test_a_refill_entered_in_error_leaves_the_flow_series_and_its_alert(
        system: Topology, receiver: WebhookReceiver) -> None:
    serial, mrn = "SN-E2E-VOID-1", "MRN-E2E-VOID-1"
    setup_oncall(system, CENTER, receiver.url_for(f"/{CENTER}/l1"))
    labeled = pump_on_therapy(system, serial, mrn, CENTER, filled_days_ago=14)
    wrong = abnormal_refill(system, serial, labeled, days_ago=0.001, elapsed_days=14)
    assert wrong["flow_deviation_pct"] == pytest.approx(40.0, abs=0.5)
    completed, created = wrong["appointment_id"], wrong["next_appointment"]["id"]
    page = wait_until(lambda: next(
        (p for p in receiver.on(f"/{CENTER}/l1") if p["alert"]["kind"] == "flow_abnormal"
         and p["alert"]["pump_serial"] == serial), None),
        what="the page about the abnormal flow", timeout_s=45)
    alert_id = page["alert"]["id"]

    with system.client("scheduling", "nurse", sub="nina.nurse") as sch:
        r = sch.post(f"/v1/refills/{wrong['id']}/entered-in-error",
                     json={"reason": "residual read from the wrong syringe"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "entered_in_error"
        again = sch.post(f"/v1/refills/{wrong['id']}/entered-in-error", json={"reason": "twice"})
        assert again.status_code == 409 and "already entered in error" in again.json()["detail"]
        assert sch.get(f"/v1/pumps/{serial}/flow-readings").json()["items"] == []
        assert sch.get(f"/v1/appointments/{created}").json()["status"] == "cancelled"
        reopened = sch.get(f"/v1/appointments/{completed}").json()
        assert reopened["status"] == "scheduled" and reopened["refill_id"] is None
        kept = sch.get(f"/v1/refills/{wrong['id']}").json()
        assert kept["status"] == "entered_in_error" and kept["voided_by"] == "nina.nurse"

    with system.client("alerts", "nurse") as alerts:
        resolved = wait_until(lambda: (lambda a: a if a["status"] == "resolved" else None)(
            alerts.get(f"/v1/alerts/{alert_id}").json()),
            what="the flow alert resolved by the void", timeout_s=45)
    assert "residual read from the wrong syringe" in resolved["resolution"]
    assert resolved["timeline"][-1]["action"] == "auto_resolved"
    assert "nina.nurse" in str(resolved["timeline"][-1]["details"])

    # recorded again, right: 14 days at the labeled rate; the previous fill is the first one
    with system.client("scheduling", "nurse") as sch:
        r = sch.post("/v1/refills", json={
            "pump_serial": serial, "performed_at": wrong["performed_at"],
            "residual_volume_ml": round(30 - labeled * 14, 3), "fill_volume_ml": 30,
            "fill_type": "saline", "appointment_id": completed})
        assert r.status_code == 201, r.text
        assert r.json()["flow_deviation_pct"] == pytest.approx(0.0, abs=0.5)
        series = sch.get(f"/v1/pumps/{serial}/flow-readings").json()["items"]
        assert [s["refill_id"] for s in series] == [r.json()["id"]]


def test_a_dose_beyond_the_hard_limits_never_reaches_the_pharmacy(
        system: Topology, receiver: WebhookReceiver, e2e_amqp_url: str) -> None:
    serial, mrn = "SN-E2E-DOSE-1", "MRN-E2E-DOSE-1"
    setup_oncall(system, CENTER, receiver.url_for(f"/{CENTER}/l1"))
    pump_on_therapy(system, serial, mrn, CENTER)  # a saline therapy: stopped for a FUDR one
    now = datetime.now(UTC)
    with system.client("scheduling", "oncologist") as sch:
        [saline] = sch.get("/v1/therapies", params={"patient_mrn": mrn}).json()["items"]
        assert sch.patch(f"/v1/therapies/{saline['id']}",
                         json={"action": "stop", "reason": "start FUDR"}).status_code == 200
        body = {"patient_mrn": mrn, "pump_serial": serial, "regimen": "fudr_alternating",
                "start_on": (now + timedelta(days=10)).date().isoformat()}
        refused = sch.post("/v1/therapies", json={
            **body, "fudr_mg_per_kg_day": 1.5, "dose_override_reason": "escalation"})
        assert refused.status_code == 422
        problem = refused.json()
        assert problem["errors"][0]["field"] == "fudr_mg_per_kg_day"
        assert "outside the hard limit of 0.05–1 mg/kg/day, which no override passes" in (
            problem["errors"][0]["message"])
        heparin = sch.post("/v1/therapies", json={**body, "heparin_units": 1e300})
        assert heparin.status_code == 422 and heparin.json()["errors"][0]["field"] == "heparin_units"
        r = sch.post("/v1/therapies", json=body)
        assert r.status_code == 201, r.text
        therapy = r.json()

    # a row written before the hard limits existed, its first fill now within the lead time
    engine = create_engine(system.env["HAI_SCHEDULING_DATABASE_URL"])
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE therapies SET fudr_mg_per_kg_day = 2.1e303 WHERE id = :id"),
                         {"id": therapy["id"]})
            conn.execute(text("UPDATE appointments SET due_at = :due WHERE therapy_id = :id "
                              "AND status = 'scheduled'"),
                         {"id": therapy["id"], "due": now + timedelta(days=1)})
    finally:
        engine.dispose()

    page = wait_until(lambda: next(
        (p for p in receiver.on(f"/{CENTER}/l1") if p["alert"]["kind"] == "order_refused"
         and p["alert"]["pump_serial"] == serial), None),
        what="the page about the refused order", timeout_s=45)
    assert page["alert"]["severity"] == "critical"
    assert "hard limit" in page["alert"]["summary"]
    with system.client("scheduling", "nurse") as sch:
        [appt] = sch.get("/v1/appointments", params={"patient_mrn": mrn,
                                                     "status": "scheduled"}).json()["items"]
        assert appt["delivery_id"] is None
        assert sch.get("/v1/deliveries", params={"patient_mrn": mrn}).json()["items"] == []

    # the oncologist corrects the dose: the order goes at once, and the alert resolves
    with system.client("scheduling", "oncologist") as sch:
        r = sch.patch(f"/v1/therapies/{therapy['id']}", json={"fudr_mg_per_kg_day": 0.12})
        assert r.status_code == 200, r.text
    pharmacy = PharmacySimulator(e2e_amqp_url)
    mine = wait_until(lambda: [o for o in pharmacy.fetch_orders(timeout=5)
                               if o["data"]["pump"]["serial_number"] == serial],
                      what="the corrected order at the pharmacy", timeout_s=45)
    assert len(mine) == 1
    [fudr] = [d for d in mine[0]["data"]["drugs"] if d["code"] == "floxuridine"]
    assert fudr["amount"] < 1000 and fudr["basis"].startswith("0.12 mg/kg/day")
    resolved = wait_until(lambda: (lambda a: a if a and a["status"] == "resolved" else None)(
        _alert(system, serial, "order_refused")), what="the refusal alert resolved", timeout_s=45)
    assert resolved["resolution"].startswith("order ")
