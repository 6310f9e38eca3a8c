"""The alerts service through its HTTP API and its consumer (SQLite, in-process bus, moved clock),
with real webhook receivers and a real SMTP server."""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.alerts import jobs, paging
from shared.clock import MovableClock
from shared.events import EventType
from shared.messaging.inproc import InProcessBus
from tests import factories
from tests.doubles import refusing_port, smtp_server, webhook
from tests.factories import T0, appointment_scheduled, flow_recorded, oncall_body
from tests.helpers import Harness, auth, deliver, emit, start_service
from tests.helpers import test_settings as make_settings
from tests.integration.alerts.alerts_testkit import NURSE, ONCALL


@pytest.fixture
def bus() -> InProcessBus:
    return InProcessBus()


@pytest.fixture
def h(tmp_path: Path, bus: InProcessBus) -> Iterator[Harness]:
    settings = make_settings(tmp_path, dashboard_url="http://dash.test", page_timeout_seconds=2.0)
    harness = start_service("alerts", settings, clock=MovableClock(T0), bus=bus)
    yield harness
    harness.runtime.engine.dispose()


def clock(h: Harness) -> MovableClock:
    c = h.runtime.clock
    assert isinstance(c, MovableClock)
    return c


def sweep(h: Harness) -> dict[str, int]:
    return paging.sweep_once(h.runtime)


def put_oncall(h: Harness, center: str, body: dict[str, Any]) -> None:
    r = h.client.put(f"/v1/oncall/{center}", json=body, headers=ONCALL)
    assert r.status_code == 200, r.text


def alerts(h: Harness, **params: Any) -> list[dict[str, Any]]:
    r = h.client.get("/v1/alerts", params=params, headers=NURSE)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def notifications(h: Harness, alert_id: str) -> list[dict[str, Any]]:
    r = h.client.get("/v1/notifications", params={"alert_id": alert_id}, headers=NURSE)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def actions(h: Harness, alert_id: str) -> list[str]:
    return [e["action"] for e in h.client.get(f"/v1/alerts/{alert_id}", headers=NURSE).json()["timeline"]]


def published(bus: InProcessBus, event_type: str) -> list[dict[str, Any]]:
    return [json.loads(m.body)["data"] for m in bus.published if m.routing_key == event_type]


# ---- raising, paging, the page's content ---------------------------------------------------

def test_abnormal_flow_pages_level_one_at_once_with_the_contract_body(h: Harness, bus: InProcessBus) -> None:
    with webhook() as hook:
        put_oncall(h, "north", oncall_body([("ann", "webhook", hook.url)], [("bob", "log", "bob")]))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=30))
        (alert,) = alerts(h)
        assert (alert["kind"], alert["severity"], alert["status"]) == ("flow_abnormal", "critical", "firing")
        assert sweep(h)["sent"] == 1
        (page,) = hook.pages
    assert set(page) >= {"alert", "level", "recipient", "ack_url"}
    assert page["level"] == 1 and page["recipient"] == "ann"
    assert page["ack_url"] == f"http://dash.test/alerts/{alert['id']}?n={page['notification_id']}"
    shown = {page["alert"][k] for k in ("patient_mrn", "pump_serial", "center")}
    assert shown == {"MRN-1", "SN1001", "north"}
    assert "details" not in page["alert"]
    (n,) = notifications(h, alert["id"])
    assert (n["status"], n["attempts"], n["level"]) == ("sent", 1, 1)
    assert (n["channel"], n["recipient"]) == ("webhook", "ann")
    assert n["sent_at"] is not None
    assert actions(h, alert["id"]) == ["raised", "page_planned", "paged"]
    deliver([h], bus)
    assert [a["id"] for a in published(bus, EventType.ALERT_RAISED)] == [alert["id"]]
    assert [p["status"] for p in published(bus, EventType.PAGE_SENT)] == ["sent"]


def test_repeats_count_and_severity_only_rises(h: Harness, bus: InProcessBus) -> None:
    with webhook() as hook:
        put_oncall(h, "north", oncall_body([("ann", "webhook", hook.url)]))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=20))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=18))
        (alert,) = alerts(h)
        assert (alert["severity"], alert["occurrences"]) == ("warning", 2)
        sweep(h)
        clock(h).advance(minutes=5)
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=-40))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=16))
        sweep(h)
        (alert,) = alerts(h)
        assert (alert["severity"], alert["occurrences"]) == ("critical", 4)
        assert alert["last_raised_at"] == "2026-11-02T08:05:00Z"
        assert alert["first_raised_at"] == "2026-11-02T08:00:00Z"
        # the summary and the details tell the latest reading; the severity keeps the worst
        assert "+16.0 %" in alert["summary"] and alert["details"]["flow_deviation_pct"] == 16
        # warning paged once; the rise to critical paged level 1 again; the repeats paged nothing
        assert [p["alert"]["severity"] for p in hook.pages] == ["warning", "critical"]
    assert actions(h, alert["id"]).count("repeated") == 2
    assert "severity_raised" in actions(h, alert["id"])


def test_info_is_recorded_not_paged(h: Harness, bus: InProcessBus) -> None:
    put_oncall(h, "north", oncall_body([("ann", "log", "ann")]))
    emit(h, bus, EventType.REFILL_DUE_SOON, appointment_scheduled())
    (alert,) = alerts(h)
    assert (alert["kind"], alert["severity"]) == ("refill_due_soon", "info")
    assert notifications(h, alert["id"]) == []


def test_every_rule_raises_through_the_consumer(h: Harness, bus: InProcessBus) -> None:
    emit(h, bus, EventType.REFILL_OVERDUE,
         factories.refill_overdue("a2", overdue_hours=30, hours_to_empty=20))
    emit(h, bus, EventType.RESERVOIR_NEAR_EMPTY, factories.reservoir_near_empty("a3", hours_to_empty=40))
    delivery = factories.delivery("o1", "requested", appointment_id="a1")
    emit(h, bus, EventType.DELIVERY_LATE, delivery)
    emit(h, bus, EventType.DELIVERY_UPDATED, {**delivery, "id": "o2", "status": "rejected"})
    emit(h, bus, EventType.RECALL_ISSUED, {
        "recall_id": "rc1", "model_code": "M", "lot_numbers": ["L1"], "reason": "fast flow",
        "quarantined": [], "implanted": [
            {"serial_number": "SN7", "patient_mrn": "MRN-7", "center": "north"},
            {"serial_number": "SN8", "patient_mrn": "MRN-8", "center": "north"}]})
    got = sorted((a["kind"], a["severity"]) for a in alerts(h))
    assert got == [("delivery_late", "warning"), ("delivery_rejected", "critical"),
                   ("device_recalled_implanted", "critical"), ("device_recalled_implanted", "critical"),
                   ("refill_overdue", "critical"), ("reservoir_near_empty", "critical")]
    # no on-call anywhere: recorded, and the timeline says why nobody was paged
    rejected = alerts(h, kind="delivery_rejected")[0]
    assert actions(h, rejected["id"]) == ["raised", "not_paged"]


# ---- clearing ------------------------------------------------------------------------------

def test_clearing_events_resolve_by_themselves(h: Harness, bus: InProcessBus) -> None:
    emit(h, bus, EventType.REFILL_DUE_SOON, appointment_scheduled("a1"))
    emit(h, bus, EventType.REFILL_OVERDUE,
         factories.refill_overdue("a1", overdue_hours=2, hours_to_empty=300))
    emit(h, bus, EventType.RESERVOIR_NEAR_EMPTY, factories.reservoir_near_empty("a1", hours_to_empty=60))
    emit(h, bus, EventType.REFILL_DUE_SOON, appointment_scheduled("b1", serial="OTHER"))
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=20))
    delivery = factories.delivery("o1", "dispatched", appointment_id="a1")
    emit(h, bus, EventType.DELIVERY_LATE, delivery)
    emit(h, bus, EventType.REFILL_COMPLETED,
         factories.refill_completed("r9", fill_type="saline", appointment_id=None))
    emit(h, bus, EventType.DELIVERY_UPDATED, {**delivery, "status": "delivered"})
    resolved = {a["kind"] for a in alerts(h, status="resolved")}
    assert resolved == {"refill_due_soon", "refill_overdue", "reservoir_near_empty", "delivery_late"}
    still_open = sorted((a["kind"], a["pump_serial"]) for a in alerts(h, status="firing"))
    assert still_open == [("flow_abnormal", "SN1001"), ("refill_due_soon", "OTHER")]
    overdue = alerts(h, kind="refill_overdue")[0]
    assert overdue["resolution"].startswith("refill r9 completed")
    assert actions(h, overdue["id"])[-1] == "auto_resolved"
    deliver([h], bus)
    assert len(published(bus, EventType.ALERT_RESOLVED)) == 4


def test_a_resolved_key_raised_again_is_a_new_alert(h: Harness, bus: InProcessBus) -> None:
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=20))
    (first,) = alerts(h)
    assert h.client.post(f"/v1/alerts/{first['id']}/resolve", json={"resolution": "dose adjusted"},
                         headers=NURSE).status_code == 200
    clock(h).advance(minutes=1)
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=20))
    assert [a["status"] for a in alerts(h)] == ["firing", "resolved"]


def test_watchdog_raises_system_stale_and_a_heartbeat_resolves_it(tmp_path: Path) -> None:
    bus = InProcessBus()
    settings = make_settings(tmp_path, sweep_interval_seconds=60, stale_after_intervals=3)
    h = start_service("alerts", settings, clock=MovableClock(T0), bus=bus)
    assert jobs.watchdog(h.runtime) == {"stale": False, "started": True}
    clock(h).advance(seconds=180)
    assert jobs.watchdog(h.runtime) == {"stale": False}
    clock(h).advance(seconds=1)
    assert jobs.watchdog(h.runtime) == {"stale": True}
    assert jobs.watchdog(h.runtime) == {"stale": True}
    (alert,) = alerts(h)
    assert (alert["kind"], alert["severity"], alert["occurrences"]) == ("system_stale", "critical", 1)
    emit(h, bus, EventType.SWEEP_COMPLETED, {"at": clock(h).now().isoformat(), "jobs": []})
    (alert,) = alerts(h)
    assert alert["status"] == "resolved" and alert["resolved_by"] == "system"
    assert jobs.watchdog(h.runtime) == {"stale": False}


# ---- people --------------------------------------------------------------------------------

def test_ack_and_resolve_with_the_actor_and_409_on_the_wrong_state(h: Harness, bus: InProcessBus) -> None:
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=30))
    (alert,) = alerts(h)
    url = f"/v1/alerts/{alert['id']}"
    assert h.client.post(f"{url}/ack", json={}, headers=auth("biomed")).status_code == 403
    assert h.client.post(f"{url}/ack", json={}).status_code == 401
    assert h.client.post("/v1/alerts/nope/ack", json={}, headers=NURSE).status_code == 404
    r = h.client.post(f"{url}/ack", json={"note": "calling the patient"}, headers=NURSE)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["acknowledged_by"]) == ("acknowledged", "nurse-nina")
    again = h.client.post(f"{url}/ack", headers=auth("oncologist"))
    assert again.status_code == 409 and "acknowledged" in again.json()["detail"]
    assert h.client.post(f"{url}/resolve", json={}, headers=NURSE).status_code == 422
    r = h.client.post(f"{url}/resolve", json={"resolution": "pump replaced"},
                      headers=auth("oncall", sub="dr-o"))
    assert r.status_code == 200
    body = r.json()
    assert (body["status"], body["resolution"], body["resolved_by"]) == ("resolved", "pump replaced", "dr-o")
    assert [(e["action"], e["actor"]) for e in body["timeline"]][-2:] == [
        ("acknowledged", "nurse-nina"), ("resolved", "dr-o")]
    twice = h.client.post(f"{url}/resolve", json={"resolution": "x"}, headers=NURSE)
    assert twice.status_code == 409 and "resolved" in twice.json()["detail"]
    assert twice.headers["content-type"].startswith("application/problem+json")
    timeline = h.client.get(f"{url}/timeline", params={"limit": 2}, headers=NURSE).json()
    assert len(timeline["items"]) == 2 and timeline["next_cursor"]


def test_alert_list_filters_and_pages_newest_first(h: Harness, bus: InProcessBus) -> None:
    for i in range(5):
        center = "north" if i < 3 else "south"
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(f"SN{i}", 30 if i % 2 else 20, center=center))
        clock(h).advance(minutes=1)
    assert [a["pump_serial"] for a in alerts(h)] == ["SN4", "SN3", "SN2", "SN1", "SN0"]
    assert [a["pump_serial"] for a in alerts(h, center="south")] == ["SN4", "SN3"]
    assert [a["pump_serial"] for a in alerts(h, severity="critical")] == ["SN3", "SN1"]
    assert [a["pump_serial"] for a in alerts(h, pump_serial="SN2", patient_mrn="MRN-1")] == ["SN2"]
    first = h.client.get("/v1/alerts", params={"limit": 2}, headers=NURSE).json()
    second = h.client.get("/v1/alerts", params={"limit": 2, "cursor": first["next_cursor"]},
                          headers=NURSE).json()
    assert [a["pump_serial"] for a in first["items"] + second["items"]] == ["SN4", "SN3", "SN2", "SN1"]
    assert h.client.get("/v1/alerts", params={"severity": "loud"}, headers=NURSE).status_code == 422


# ---- on-call and escalation ----------------------------------------------------------------

def test_oncall_put_and_who_is_on_now(h: Harness) -> None:
    body = oncall_body([("ann", "log", "ann"), ("bob", "email", "bob@example.org")],
                       [("cy", "webhook", "http://127.0.0.1:9/x")], delay_s=600, shift_hours=12,
                       rotation_start="2026-11-02T02:00:00Z")
    assert h.client.put("/v1/oncall/north", json=body, headers=NURSE).status_code == 403
    r = h.client.put("/v1/oncall/north", json=body, headers=ONCALL)
    assert r.status_code == 200 and r.json()["escalation_delay_seconds"] == 600
    now = h.client.get("/v1/oncall/north/now", headers=NURSE).json()
    assert [(lv["level"], lv["name"]) for lv in now["levels"]] == [(1, "ann"), (2, "cy")]
    assert now["levels"][0]["shift_ends_at"] == "2026-11-02T14:00:00Z"
    clock(h).advance(hours=6)
    assert h.client.get("/v1/oncall/north/now", headers=NURSE).json()["levels"][0]["name"] == "bob"
    assert h.client.get("/v1/oncall/south/now", headers=NURSE).status_code == 404
    bad = {**body, "levels": [{"members": [{"name": "x", "channel": "pigeon", "address": "y"}],
                               "rotation_start": "2026-11-02T02:00:00", "shift_hours": 0}]}
    r = h.client.put("/v1/oncall/north", json=bad, headers=ONCALL)
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} >= {
        "levels.0.members.0.channel", "levels.0.rotation_start", "levels.0.shift_hours"}
    default = oncall_body([("ann", "log", "ann")])
    assert h.client.put("/v1/oncall/north", json={"levels": default["levels"]}, headers=ONCALL).json()[
        "escalation_delay_seconds"] == 900


def test_critical_escalates_level_by_level_until_acknowledged(h: Harness, bus: InProcessBus) -> None:
    with webhook() as l1, webhook() as l2, webhook() as l3:
        put_oncall(h, "north", oncall_body([("ann", "webhook", l1.url)], [("bob", "webhook", l2.url)],
                                           [("cy", "webhook", l3.url)], delay_s=900))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN1", 30))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN2", 30))
        sweep(h)
        assert (len(l1.pages), len(l2.pages)) == (2, 0)
        clock(h).advance(seconds=899)
        assert sweep(h)["escalated"] == 0
        clock(h).advance(seconds=2)
        assert sweep(h)["escalated"] == 2
        assert {p["alert"]["pump_serial"] for p in l2.pages} == {"SN1", "SN2"}
        assert all(p["level"] == 2 for p in l2.pages)
        sn1 = alerts(h, pump_serial="SN1")[0]
        assert h.client.post(f"/v1/alerts/{sn1['id']}/ack", headers=ONCALL).status_code == 200
        clock(h).advance(seconds=901)
        sweep(h)
        assert [p["alert"]["pump_serial"] for p in l3.pages] == ["SN2"]
        clock(h).advance(seconds=3600)
        sweep(h)
        assert (len(l1.pages), len(l2.pages), len(l3.pages)) == (2, 2, 1)
    sn2 = alerts(h, pump_serial="SN2")[0]
    assert sn2["escalation_level"] == 3
    assert alerts(h, pump_serial="SN1")[0]["escalation_level"] == 2


def test_a_warning_pages_level_one_once_and_never_escalates(h: Harness, bus: InProcessBus) -> None:
    with webhook() as l1, webhook() as l2:
        put_oncall(h, "north", oncall_body([("ann", "webhook", l1.url)], [("bob", "webhook", l2.url)],
                                           delay_s=60))
        emit(h, bus, EventType.DELIVERY_LATE,
             factories.delivery("o1", "accepted", serial="SN1", appointment_id="a1"))
        for _ in range(3):
            sweep(h)
            clock(h).advance(hours=1)
        assert (len(l1.pages), len(l2.pages)) == (1, 0)


def test_webhook_failing_twice_is_retried_with_backoff_then_sent(h: Harness, bus: InProcessBus) -> None:
    with webhook(fail_first=2) as hook:
        put_oncall(h, "north", oncall_body([("ann", "webhook", hook.url)]))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=20))
        (alert,) = alerts(h)
        assert sweep(h)["retrying"] == 1
        (n,) = notifications(h, alert["id"])
        assert (n["status"], n["attempts"], n["error"]) == ("retrying", 1, "webhook: HTTP 503")
        assert n["next_attempt_at"] == "2026-11-02T08:00:02Z"
        assert sweep(h)["claimed"] == 0  # not due before the backoff
        clock(h).advance(seconds=2)
        assert sweep(h)["retrying"] == 1
        clock(h).advance(seconds=3)
        assert sweep(h)["claimed"] == 0  # the second retry waits 4 s
        clock(h).advance(seconds=1)
        assert sweep(h)["sent"] == 1
        assert (hook.attempts, len(hook.pages)) == (3, 1)
    (n,) = notifications(h, alert["id"])
    assert (n["status"], n["attempts"], n["error"]) == ("sent", 3, None)
    assert actions(h, alert["id"]).count("page_attempt_failed") == 2


def test_webhook_always_failing_is_marked_failed_and_the_next_level_paged(
        h: Harness, bus: InProcessBus) -> None:
    with webhook(always_fail=True) as dead, webhook() as l2:
        put_oncall(h, "north", oncall_body([("ann", "webhook", dead.url)], [("bob", "webhook", l2.url)]))
        emit(h, bus, EventType.DELIVERY_LATE,
             factories.delivery("o1", "accepted", serial="SN1", appointment_id="a1"))
        (alert,) = alerts(h)
        for _ in range(6):
            sweep(h)
            clock(h).advance(seconds=60)
        assert dead.attempts == 5
        assert [p["recipient"] for p in l2.pages] == ["bob"]
    first, second = notifications(h, alert["id"])
    assert (first["status"], first["attempts"], first["level"]) == ("failed", 5, 1)
    assert "503" in first["error"]
    assert (second["status"], second["level"]) == ("sent", 2)
    deliver([h], bus)
    assert [p["id"] for p in published(bus, EventType.PAGE_FAILED)] == [first["id"]]
    assert "page_failed" in actions(h, alert["id"])


def test_last_level_failing_is_recorded_never_dropped(h: Harness, bus: InProcessBus) -> None:
    h.runtime.settings.page_max_attempts = 2
    with webhook(always_fail=True) as dead:
        put_oncall(h, "north", oncall_body([("ann", "webhook", dead.url)]))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=30))
        for _ in range(3):
            sweep(h)
            clock(h).advance(seconds=10)
    (alert,) = alerts(h)
    assert [n["status"] for n in notifications(h, alert["id"])] == ["failed"]
    assert actions(h, alert["id"])[-2:] == ["page_failed", "escalation_exhausted"]


def test_acknowledged_before_the_page_goes_out_cancels_it(h: Harness, bus: InProcessBus) -> None:
    put_oncall(h, "north", oncall_body([("ann", "log", "ann")]))
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=30))
    (alert,) = alerts(h)
    h.client.post(f"/v1/alerts/{alert['id']}/ack", headers=NURSE)
    sweep(h)
    (n,) = notifications(h, alert["id"])
    assert n["status"] == "cancelled" and "acknowledged" in n["error"]


def test_default_oncall_covers_centers_without_one_and_the_log_channel_pages(
        h: Harness, bus: InProcessBus) -> None:
    put_oncall(h, "default", oncall_body([("desk", "log", "desk")]))
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=30, center="elsewhere"))
    assert sweep(h)["sent"] == 1


# ---- email ---------------------------------------------------------------------------------

def test_email_page_through_a_real_smtp_server(tmp_path: Path, bus: InProcessBus) -> None:
    with smtp_server() as (port, inbox):
        settings = make_settings(tmp_path, smtp_host="127.0.0.1", smtp_port=port,
                                 smtp_from="pager@hai.test", dashboard_url="http://dash.test")
        h = start_service("alerts", settings, clock=MovableClock(T0), bus=bus)
        put_oncall(h, "north", oncall_body([("ann", "email", "ann@hospital.test")]))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=30))
        assert sweep(h)["sent"] == 1
    ((sender, rcpts, content),) = inbox.messages
    (alert,) = alerts(h)
    assert (sender, rcpts) == ("pager@hai.test", ["ann@hospital.test"])
    message = email.message_from_string(content, policy=email.policy.default)
    assert str(message["Subject"]).strip().startswith("[HAI critical] pump SN1001 flow fast")
    for expected in ("MRN-1", "SN1001", "north", f"http://dash.test/alerts/{alert['id']}"):
        assert expected in content


def test_email_to_a_dead_smtp_server_is_retried(tmp_path: Path, bus: InProcessBus) -> None:
    with refusing_port() as port:
        settings = make_settings(tmp_path, smtp_host="127.0.0.1", smtp_port=port,
                                 page_timeout_seconds=1.0)
        h = start_service("alerts", settings, clock=MovableClock(T0), bus=bus)
        put_oncall(h, "north", oncall_body([("ann", "email", "ann@hospital.test")]))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=30))
        assert sweep(h)["retrying"] == 1
    (alert,) = alerts(h)
    assert notifications(h, alert["id"])[0]["error"].startswith("email: ")


# ---- silences ------------------------------------------------------------------------------

def test_silenced_alerts_are_recorded_but_not_paged(h: Harness, bus: InProcessBus) -> None:
    put_oncall(h, "north", oncall_body([("ann", "log", "ann")]))
    body = {"matchers": {"kind": "flow_abnormal", "center": "north"},
            "starts_at": "2026-11-02T07:00:00Z", "ends_at": "2026-11-02T09:00:00Z",
            "reason": "pump study, flows checked by hand"}
    key = {**ONCALL, "Idempotency-Key": "sil-1"}
    assert h.client.post("/v1/silences", json=body, headers=NURSE).status_code == 403
    r = h.client.post("/v1/silences", json=body, headers=key)
    assert r.status_code == 201, r.text
    replay = h.client.post("/v1/silences", json=body, headers=key)
    assert replay.status_code == 201 and replay.json()["id"] == r.json()["id"]
    assert h.client.post("/v1/silences", json={**body, "reason": "other"}, headers=key).status_code == 409
    assert len(h.client.get("/v1/silences", headers=NURSE).json()["items"]) == 1
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN1", 30))
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN2", 30, center="south"))
    silenced = alerts(h, pump_serial="SN1")[0]
    assert silenced["silenced_by"] == r.json()["id"]
    assert notifications(h, silenced["id"]) == []
    assert actions(h, silenced["id"]) == ["raised", "silenced"]
    clock(h).advance(hours=2)  # the silence has ended: a new alert pages again
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN3", 30))
    assert len(notifications(h, alerts(h, pump_serial="SN3")[0]["id"])) == 1
    assert h.client.get("/v1/silences", params={"active": True}, headers=NURSE).json()["items"] == []


def test_silence_input_is_checked(h: Harness) -> None:
    base = {"starts_at": "2026-11-02T07:00:00Z", "ends_at": "2026-11-02T09:00:00Z", "reason": "r"}
    for bad in ({**base, "matchers": {}}, {**base, "matchers": {"kind": "nope"}},
                {**base, "matchers": {"center": "n"}, "ends_at": "2026-11-02T06:00:00Z"},
                {**base, "matchers": {"center": "n"}, "starts_at": "2026-11-02T07:00:00"}):
        assert h.client.post("/v1/silences", json=bad, headers=ONCALL).status_code == 422, bad


def test_unknown_shapes_are_dead_lettered_not_retried(h: Harness, bus: InProcessBus) -> None:
    from shared.events import EVENTS_EXCHANGE, CloudEvent
    from shared.messaging.base import OutgoingMessage

    event = CloudEvent.create(source="/t", type=EventType.FLOW_RECORDED, data={"pump_serial": 1})
    bus.declare(h.runtime.all_queues())
    bus.publish_batch([OutgoingMessage(event.id, EVENTS_EXCHANGE, event.type, event.to_json_bytes())])
    (outcome,) = deliver([h], bus)
    assert outcome.action == "dead_letter"
    assert alerts(h) == []


def test_timeline_records_repeat_acknowledge_after_raise(h: Harness, bus: InProcessBus) -> None:
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=20))
    clock(h).advance(minutes=1)
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=21))
    (alert,) = alerts(h)
    url = f"/v1/alerts/{alert['id']}"
    clock(h).advance(minutes=1)
    ack = h.client.post(f"{url}/ack", json={"note": "seen"}, headers=NURSE)
    assert ack.status_code == 200, ack.text
    clock(h).advance(minutes=1)
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=22))
    detail = h.client.get(url, headers=NURSE).json()
    assert [(e["action"], e["actor"], e["at"]) for e in detail["timeline"]] == [
        ("raised", "system", "2026-11-02T08:00:00Z"),
        ("not_paged", "system", "2026-11-02T08:00:00Z"),
        ("repeated", "system", "2026-11-02T08:01:00Z"),
        ("acknowledged", "nurse-nina", "2026-11-02T08:02:00Z"),
        ("repeated", "system", "2026-11-02T08:03:00Z")]
    # a repeat after the acknowledgement keeps it acknowledged, and tells the latest fact
    assert (detail["status"], detail["acknowledged_by"]) == ("acknowledged", "nurse-nina")
    assert detail["details"]["flow_deviation_pct"] == 22
