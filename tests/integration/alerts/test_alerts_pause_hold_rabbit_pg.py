"""End to end on RabbitMQ and PostgreSQL: a clinician pauses a therapy in scheduling, alerts hears
of it and holds the pump's flow warning (recorded, not paged); the therapy resumed, the warning
is paged then, once; the resume heard again pages nothing more."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from services.alerts import paging
from services.alerts.models import TherapyHold
from shared.contracts.vocabulary import TherapyStatus
from shared.events import EVENTS_EXCHANGE, CloudEvent, EventType
from shared.messaging.base import OutgoingMessage
from tests.factories import flow_recorded
from tests.helpers import Harness, wait_until
from tests.integration.alerts.alerts_testkit import NURSE, ONCALL
from tests.integration.scheduling.test_center_settings_pg import _publish, scheduling_and_alerts
from tests.unit.scheduling.scheduling_support import ONCOLOGIST, patient, therapy


def flow_alert(alerts: Harness) -> dict[str, Any] | None:
    r = alerts.client.get("/v1/alerts", params={"pump_serial": "SN1"}, headers=NURSE)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    return dict(items[0]) if items else None


def pages(alerts: Harness, alert_id: str) -> int:
    r = alerts.client.get("/v1/notifications", params={"alert_id": alert_id}, headers=NURSE)
    return len(r.json()["items"])


def test_a_pause_in_scheduling_holds_the_pumps_warning_till_it_resumes(
        tmp_path: Path, fresh_vhost: str, pg_database: Callable[[str], str]) -> None:
    with scheduling_and_alerts(tmp_path, fresh_vhost, pg_database) as (sched, alerts, bus, clock):
        r = alerts.client.put("/v1/oncall/C1", headers=ONCALL, json={
            "escalation_delay_seconds": 900, "levels": [{
                "members": [{"name": "ann", "channel": "log", "address": "ann"}],
                "rotation_start": "2026-11-01T08:00:00Z", "shift_hours": 12}]})
        assert r.status_code == 200, r.text
        patient(sched, "MRN1", center="C1")
        _publish(bus, EventType.PUMP_IMPLANTED, {
            "serial_number": "SN1", "model_code": "INTERA-3000", "reservoir_ml": 30,
            "labeled_flow_ml_per_day": 1.0, "status": "implanted", "patient_mrn": "MRN1",
            "center": "C1", "implanted_at": "2026-10-01T00:00:00Z"}, "SN1")
        wait_until(lambda: sched.client.get("/v1/pumps/SN1/flow-readings",
                                            headers=NURSE).status_code == 200,
                   what="scheduling to learn the implant", timeout_s=30)
        t = therapy(sched, "MRN1", "SN1", start_on="2026-11-04", regimen="saline_maintenance")
        url = f"/v1/therapies/{t['id']}"

        r = sched.client.patch(url, json={"action": "pause", "reason": "neutropenia"},
                               headers=ONCOLOGIST)
        assert r.status_code == 200, r.text

        def hold_heard() -> bool:
            with alerts.runtime.uow_factory() as uow:
                hold = uow.session.get(TherapyHold, t["id"])
                return hold is not None and hold.status == TherapyStatus.PAUSED

        wait_until(hold_heard, what="alerts to hear of the pause", timeout_s=30)
        _publish(bus, EventType.FLOW_RECORDED, flow_recorded(
            "SN1", 20.0, mrn="MRN1", center="C1", refill_id="r1"), "SN1")
        wait_until(lambda: flow_alert(alerts) is not None, what="the flow warning", timeout_s=30)
        alert = flow_alert(alerts)
        assert alert is not None and alert["severity"] == "warning"
        assert alert["held_by_therapy"] == t["id"]
        paging.sweep_once(alerts.runtime)
        assert pages(alerts, alert["id"]) == 0

        clock.advance(minutes=30)
        r = sched.client.patch(url, json={"action": "resume"}, headers=ONCOLOGIST)
        assert r.status_code == 200 and r.json()["status"] == TherapyStatus.ACTIVE

        def paged() -> bool:
            paging.sweep_once(alerts.runtime)
            return pages(alerts, alert["id"]) == 1

        wait_until(paged, what="the held warning paged at the resume", timeout_s=30)
        # the resume heard again (a producer's retry: another event id): nothing more
        again = CloudEvent.create(source="/test", type=EventType.THERAPY_STATUS_CHANGED, data={
            "therapy_id": t["id"], "patient_mrn": "MRN1", "pump_serial": "SN1", "center": "C1",
            "status": TherapyStatus.ACTIVE, "reason": None, "changed_by": "dr-oz",
            "at": "2026-11-02T08:30:00Z"}, subject="SN1")
        publisher = bus.publisher()
        publisher.publish_batch([OutgoingMessage(
            message_id=again.id, exchange=EVENTS_EXCHANGE, routing_key=again.type,
            body=again.to_json_bytes())])
        publisher.close()
        inbox = alerts.runtime.platform.inbox

        def handled() -> bool:
            with alerts.runtime.engine.connect() as conn:
                return conn.execute(select(inbox.c.event_id).where(
                    inbox.c.event_id == again.id)).first() is not None

        wait_until(handled, what="alerts to handle the repeated resume", timeout_s=30)
        for _ in range(3):
            paging.sweep_once(alerts.runtime)
        assert pages(alerts, alert["id"]) == 1
        assert flow_alert(alerts) is not None
