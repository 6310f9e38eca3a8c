"""Centre settings on PostgreSQL and RabbitMQ: an admin's change is judged by at once in
scheduling and, from the event, in alerts, with no restart; a non-admin's or a wrong change
leaves the database as it was; the registry report on PostgreSQL matches the hand figures."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select

from services.scheduling.models import CenterSettings
from shared.clock import MovableClock
from shared.events import EVENTS_EXCHANGE, CloudEvent, EventType
from shared.messaging.base import OutgoingMessage
from shared.messaging.rabbit import RabbitBus
from shared.runtime import Worker
from tests.factories import T0, flow_recorded
from tests.helpers import Harness, auth, start, wait_until
from tests.helpers import test_settings as settings_for
from tests.unit.scheduling.registry_support import EXPECTED, by_key, seed_registry
from tests.unit.scheduling.scheduling_support import patient, therapy, worklist

ADMIN = auth("admin", sub="ada-admin")
NURSE = auth("nurse", sub="nina")


def _publish(bus: RabbitBus, event_type: str, data: dict[str, Any], subject: str) -> None:
    event = CloudEvent.create(source="/test", type=event_type, data=data, subject=subject)
    pub = bus.publisher()
    pub.publish_batch([OutgoingMessage(message_id=event.id, exchange=EVENTS_EXCHANGE,
                                       routing_key=event_type, body=event.to_json_bytes())])
    pub.close()


def _flow_alerts(alerts: Harness) -> dict[str, str]:
    r = alerts.client.get("/v1/alerts", params={"kind": "flow_abnormal"}, headers=NURSE)
    assert r.status_code == 200, r.text
    return {a["pump_serial"]: a["severity"] for a in r.json()["items"]}


def _own_rows(h: Harness) -> list[tuple[Any, ...]]:
    with h.runtime.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(CenterSettings.__table__))]


@contextmanager
def scheduling_and_alerts(tmp_path: Path, vhost: str, pg_database: Callable[[str], str],
                          **overrides: Any) -> Iterator[tuple[Harness, Harness, RabbitBus,
                                                              MovableClock]]:
    """Scheduling and alerts on PostgreSQL, their workers (no jobs) consuming from RabbitMQ:
    (scheduling, alerts, bus, clock at T0)."""
    settings = settings_for(tmp_path, amqp_url=vhost,
                            scheduling_database_url=pg_database("scheduling"),
                            alerts_database_url=pg_database("alerts"),
                            consumer_retry_delay_ms=200, outbox_poll_seconds=0.1, **overrides)
    bus = RabbitBus(vhost, retry_delay_ms=200)
    clock = MovableClock(T0)
    sched, _ = start("scheduling", settings, clock, bus)
    alerts, _ = start("alerts", settings, clock, bus)
    workers = [Worker(sched.runtime, jobs=False), Worker(alerts.runtime, jobs=False)]
    try:
        for w in workers:
            w.start()
        yield sched, alerts, bus, clock
    finally:
        for w in workers:
            w.stop()
        bus.close()


def test_a_change_applies_in_scheduling_and_alerts_without_a_restart(
        tmp_path: Path, fresh_vhost: str, pg_database: Callable[[str], str]) -> None:
    with scheduling_and_alerts(tmp_path, fresh_vhost, pg_database,
                               due_soon_hours=24) as (sched, alerts, bus, _):
        for n, center in ((1, "C1"), (2, "C2")):
            patient(sched, f"MRN{n}", center=center)
            _publish(bus, EventType.PUMP_IMPLANTED, {
                "serial_number": f"SN{n}", "model_code": "INTERA-3000", "reservoir_ml": 30,
                "labeled_flow_ml_per_day": 1.0, "status": "implanted", "patient_mrn": f"MRN{n}",
                "center": center, "implanted_at": "2026-10-01T00:00:00Z"}, f"SN{n}")
        wait_until(lambda: all(sched.client.get(f"/v1/pumps/SN{n}/flow-readings",
                                                headers=NURSE).status_code == 200 for n in (1, 2)),
                   what="scheduling to learn the implants", timeout_s=30)
        for n in (1, 2):
            therapy(sched, f"MRN{n}", f"SN{n}", start_on="2026-11-04",
                    regimen="saline_maintenance")
        assert {a["center"]: a["urgency"] for a in worklist(sched)} == {"C1": "later",
                                                                         "C2": "later"}

        # refused changes leave the database as it was
        assert sched.client.put("/v1/centers/C1/settings", json={"due_soon_hours": 48},
                                headers=NURSE).status_code == 403
        assert sched.client.put("/v1/centers/C1/settings", json={"flow_warning_pct": 8,
                                "flow_critical_pct": 8}, headers=ADMIN).status_code == 422
        assert sched.client.put("/v1/centers/C1/settings", json={"time_zone": "Nowhere/Land"},
                                headers=ADMIN).status_code == 422
        assert _own_rows(sched) == []

        r = sched.client.put("/v1/centers/C1/settings", headers=ADMIN, json={
            "due_soon_hours": 48, "flow_warning_pct": 8, "flow_critical_pct": 12})
        assert r.status_code == 200, r.text
        # scheduling judges by it at once
        assert {a["center"]: a["urgency"] for a in worklist(sched)} == {"C1": "due_soon",
                                                                         "C2": "later"}
        # alerts hears of it: a 10 % reading is a warning in C1 (8 %), nothing in C2 (15 %)
        wait_until(lambda: alerts.client.get("/v1/audit", headers=ADMIN).status_code == 200,
                   what="alerts to answer")

        def c1_judged_by_its_band() -> bool:
            _publish(bus, EventType.FLOW_RECORDED, flow_recorded(
                "SN1", 10.0, mrn="MRN1", center="C1", refill_id=f"r1-{threading.get_ident()}"),
                "SN1")
            return "SN1" in _flow_alerts(alerts)

        wait_until(c1_judged_by_its_band, what="alerts to apply C1's own flow band", timeout_s=30)
        _publish(bus, EventType.FLOW_RECORDED, flow_recorded("SN2", 10.0, mrn="MRN2",
                                                             center="C2", refill_id="r2"), "SN2")
        _publish(bus, EventType.FLOW_RECORDED, flow_recorded("SN3", 13.0, mrn="MRN3",
                                                             center="C1", refill_id="r3"), "SN3")
        wait_until(lambda: "SN3" in _flow_alerts(alerts), what="the 13 % reading's alert")
        got = _flow_alerts(alerts)
        assert got["SN1"] == "warning" and got["SN3"] == "critical"
        assert "SN2" not in got


def test_the_registry_report_on_postgresql_matches_the_hand_figures(
        tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    h, _ = start("scheduling", settings_for(tmp_path,
                                            scheduling_database_url=pg_database("scheduling")))
    seed_registry(h)
    r = h.client.get("/v1/reports/refills", params={"from": "2026-10", "to": "2026-11"},
                     headers=NURSE)
    assert r.status_code == 200, r.text
    assert by_key(r.json()["rows"]) == EXPECTED


def test_a_double_submit_on_postgresql_is_one_change(
        tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    h, _ = start("scheduling", settings_for(tmp_path,
                                            scheduling_database_url=pg_database("scheduling")))
    body = {"due_soon_hours": 24, "time_zone": "Europe/Oslo"}
    answers: list[int] = []
    barrier = threading.Barrier(4)

    def put() -> None:
        barrier.wait()
        answers.append(h.client.put("/v1/centers/NEW/settings", json=body,
                                    headers=ADMIN).status_code)

    threads = [threading.Thread(target=put) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200] * 4
    got = h.client.get("/v1/centers/NEW/settings", headers=NURSE).json()
    assert got["version"] == 1
    history = h.client.get("/v1/centers/NEW/settings/history", headers=NURSE).json()["items"]
    assert len(history) == 1
