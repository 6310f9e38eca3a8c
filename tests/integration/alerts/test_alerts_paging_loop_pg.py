"""Pages that reach a phone and a loop that closes, on PostgreSQL (and RabbitMQ end to end): apprise
channels over real sockets (a JSON endpoint, a self-hosted ntfy, SMTP), several addresses per member
tried in order, read status per recipient, re-notify and snooze, silences that end, storms, and the
heartbeat out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select, update

from services.alerts import paging
from services.alerts.models import MESSAGES_SENT, Notification
from shared.clock import MovableClock
from shared.events import EventType
from shared.messaging.inproc import InProcessBus
from tests.doubles import ntfy_server, refusing_port, smtp_server, webhook
from tests.factories import T0, flow_recorded, oncall_body, refill_overdue
from tests.helpers import Harness, deliver, emit
from tests.integration.alerts.alerts_testkit import NURSE, ONCALL
from tests.integration.alerts.test_alerts_api import clock
from tests.integration.alerts.test_alerts_pg import pg_alerts

SECRET = "s3cret-Tok3n"


@pytest.fixture
def bus() -> InProcessBus:
    return InProcessBus()


@pytest.fixture
def h(tmp_path, pg_database: Callable[[str], str], bus: InProcessBus) -> Iterator[Harness]:
    harness = pg_alerts(tmp_path, pg_database("alerts"), MovableClock(T0), bus,
                        dashboard_url="http://dash.test")
    yield harness
    harness.runtime.engine.dispose()


def member(name: str, channel: str, address: str, *fallbacks: tuple[str, str]) -> dict[str, Any]:
    return {"name": name, "channel": channel, "address": address,
            "fallbacks": [{"channel": c, "address": a} for c, a in fallbacks]}


def oncall(*levels: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"escalation_delay_seconds": 900, **extra, "levels": [
        {"members": members, "rotation_start": "2026-11-01T08:00:00Z", "shift_hours": 12}
        for members in levels]}


def put(h: Harness, center: str, body: dict[str, Any]) -> dict[str, Any]:
    r = h.client.put(f"/v1/oncall/{center}", json=body, headers=ONCALL)
    assert r.status_code == 200, r.text
    return dict(r.json())


def the_alert(h: Harness, **params: Any) -> dict[str, Any]:
    r = h.client.get("/v1/alerts", params=params, headers=NURSE)
    (alert,) = r.json()["items"]
    return dict(alert)


def pages_of(h: Harness, alert_id: str) -> list[dict[str, Any]]:
    r = h.client.get("/v1/notifications", params={"alert_id": alert_id}, headers=NURSE)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def timeline(h: Harness, alert_id: str) -> list[dict[str, Any]]:
    return list(h.client.get(f"/v1/alerts/{alert_id}", headers=NURSE).json()["timeline"])


def actions(h: Harness, alert_id: str) -> list[str]:
    return [e["action"] for e in timeline(h, alert_id)]


def sweep(h: Harness) -> dict[str, int]:
    return paging.sweep_once(h.runtime)


# ---- apprise channels, addresses tried in order -----------------------------------------------

def test_a_failing_first_address_falls_back_to_a_self_hosted_ntfy_and_no_secret_shows(
        h: Harness, bus: InProcessBus, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with refusing_port() as dead, ntfy_server(password=SECRET) as ntfy:
        body = oncall([member("ann", "apprise", f"json://pager:{SECRET}@127.0.0.1:{dead}/page",
                              ("apprise", f"ntfy://ann:{SECRET}@127.0.0.1:{ntfy.port}/oncall-north"))])
        shown = put(h, "north", body)
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=40))
        facts = sweep(h)
    assert facts["sent"] == 1, facts
    (message,) = ntfy.on("oncall-north")
    alert = the_alert(h)
    assert "MRN-1" in message["message"] and "SN1001" in message["message"]
    assert f"http://dash.test/alerts/{alert['id']}?n=" in message["message"]
    assert message["title"].startswith("[HAI critical]")
    (page,) = pages_of(h, alert["id"])
    assert (page["status"], page["sent_route"], page["attempts"]) == ("sent", 1, 1)
    paged = next(e for e in timeline(h, alert["id"]) if e["action"] == "paged")
    assert paged["details"]["route"] == 1 and "json://pager:****@" in paged["details"]["failed"][0]
    # the secret is never shown back nor logged: on-call table, who is on now, pages, timeline
    answers = [str(shown), h.client.get("/v1/oncall/north", headers=NURSE).text,
               h.client.get("/v1/oncall/north/now", headers=NURSE).text,
               h.client.get("/v1/notifications", headers=NURSE).text,
               h.client.get(f"/v1/alerts/{alert['id']}", headers=NURSE).text]
    for answer in answers:
        assert SECRET not in answer
    assert "ntfy://ann:****@127.0.0.1" in answers[1]
    assert not [r for r in caplog.records if SECRET in r.getMessage()]


def test_apprise_pages_a_json_endpoint_and_an_smtp_server(h: Harness, bus: InProcessBus) -> None:
    with webhook() as hook, smtp_server() as (smtp_port, inbox):
        put(h, "north", oncall([member("ann", "apprise", f"json://127.0.0.1:{hook.port}/ann")]))
        put(h, "south", oncall([member(
            "bob", "apprise", f"mailto://127.0.0.1:{smtp_port}?from=pager@hai.test&to=bob@h.test")]))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN1", 40))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN2", 40, center="south"))
        assert sweep(h)["sent"] == 2
    (posted,) = hook.on("/ann")
    assert "SN1" in posted["message"] and posted["title"].startswith("[HAI critical]")
    ((sender, rcpts, content),) = inbox.messages
    assert (sender, rcpts) == ("pager@hai.test", ["bob@h.test"]) and "SN2" in content


def test_every_address_failing_is_one_failed_attempt_naming_each(h: Harness, bus: InProcessBus) -> None:
    with refusing_port() as dead, ntfy_server(always_fail=True) as ntfy:
        put(h, "north", oncall([member("ann", "apprise", f"ntfy://127.0.0.1:{ntfy.port}/t",
                                       ("webhook", f"http://127.0.0.1:{dead}/page"))]))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=40))
        assert sweep(h)["retrying"] == 1
    (page,) = pages_of(h, the_alert(h)["id"])
    assert page["error"].startswith("apprise: ntfy://127.0.0.1") and "; webhook: " in page["error"]
    assert ntfy.refused == 1


def test_an_apprise_page_does_not_follow_a_redirect(h: Harness, bus: InProcessBus) -> None:
    with webhook() as metadata, webhook(redirect_to="http://169.254.169.254/latest") as hop:
        hop.redirect_to = metadata.url
        put(h, "north", oncall([member("ann", "apprise", f"json://127.0.0.1:{hop.port}/page")]))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=40))
        assert sweep(h)["retrying"] == 1
    assert hop.attempts == 1 and metadata.attempts == 0


@pytest.mark.parametrize(("address", "why"), [
    ("json://169.254.1.5/latest", "link-local"),
    ("json://169.254.169.254/latest", "metadata"),
    ("ntfys://metadata.google.internal/t", "metadata"),
    ("syslog://", "reaches a person"),
    ("nosuchservice://x/y", "reaches a person"),
])
def test_apprise_addresses_a_page_may_not_go_to_are_refused(h: Harness, address: str, why: str) -> None:
    for body in (oncall([member("ann", "apprise", address)]),
                 oncall([member("ann", "log", "ann", ("apprise", address))])):
        r = h.client.put("/v1/oncall/north", json=body, headers=ONCALL)
        assert r.status_code == 422 and why in r.text, r.text
    assert h.client.get("/v1/oncall/north", headers=NURSE).status_code == 404


def test_a_member_s_address_that_is_no_url_or_too_many_fallbacks_is_422(h: Harness) -> None:
    for body in (oncall([member("ann", "apprise", "just-a-phone-number")]),
                 oncall([member("ann", "log", "a", *[("log", f"x{i}") for i in range(5)])]),
                 oncall([member("ann", "log", "a", ("apprise", "json://x\x00/"))])):
        assert h.client.put("/v1/oncall/north", json=body, headers=ONCALL).status_code == 422


# ---- read status per recipient -----------------------------------------------------------------

def test_sent_delivered_seen_acknowledged_per_recipient(h: Harness, bus: InProcessBus) -> None:
    with webhook(answer={"delivered": True}) as ann, webhook() as bob:
        put(h, "north", oncall([member("ann", "webhook", ann.url)], [member("bob", "webhook", bob.url)]))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=40))
        sweep(h)
        clock(h).advance(seconds=901)
        sweep(h)
    alert = the_alert(h)
    first, second = pages_of(h, alert["id"])
    assert (first["status"], second["status"]) == ("delivered", "sent")
    assert first["delivered_at"] and second["delivered_at"] is None
    seen = f"/v1/notifications/{first['id']}/seen"
    r = h.client.post(seen, headers=NURSE)
    assert r.status_code == 200 and r.json()["status"] == "seen", r.text
    assert h.client.post(seen, headers=NURSE).json()["seen_at"] == r.json()["seen_at"]  # once
    assert h.client.post("/v1/notifications/nope/seen", headers=NURSE).status_code == 404
    assert h.client.post(seen, headers=auth_none()).status_code == 401
    # acknowledged through ann's link: ann's page is acknowledged, bob's keeps its own status
    r = h.client.post(f"/v1/alerts/{alert['id']}/ack", json={"notification_id": first["id"]},
                      headers=ONCALL)
    assert r.status_code == 200 and r.json()["acknowledged_by"] == "oncall-olga", r.text
    first, second = pages_of(h, alert["id"])
    assert (first["status"], second["status"]) == ("acknowledged", "sent")
    assert first["acknowledged_at"] and second["acknowledged_at"] is None
    assert h.client.post(seen, headers=NURSE).json()["status"] == "acknowledged"  # never back
    assert [a for a in actions(h, alert["id"]) if a.startswith("page") or a == "acknowledged"] == [
        "page_planned", "paged", "page_delivered", "page_planned", "paged", "page_seen",
        "acknowledged", "page_acknowledged"]
    acked = [e for e in timeline(h, alert["id"]) if e["action"].endswith("acknowledged")]
    assert [(e["actor"], e["details"].get("notification_id")) for e in acked] == [
        ("oncall-olga", first["id"]), ("oncall-olga", first["id"])]


def test_an_acknowledgement_lands_on_the_acknowledging_user_s_own_pages(
        h: Harness, bus: InProcessBus) -> None:
    put(h, "north", oncall([member("ann", "log", "ann")], [member("oncall-olga", "log", "olga")],
                           [member("cy", "log", "cy")]))
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=40))
    sweep(h)
    for _ in range(2):  # unacknowledged: levels 2 and 3 are paged
        clock(h).advance(seconds=900)
        sweep(h)
    alert = the_alert(h)
    ann, olga, cy = pages_of(h, alert["id"])
    other = h.client.post(f"/v1/alerts/{alert['id']}/ack", headers=ONCALL,
                          json={"notification_id": "nope"})
    assert other.status_code == 422 and "notification_id" in other.text, other.text
    assert the_alert(h)["status"] == "firing"  # a bad link acknowledges nothing
    # no link: olga (the member whose name is her login) acknowledges her own page only
    r = h.client.post(f"/v1/alerts/{alert['id']}/ack", headers=ONCALL, json={"note": "on it"})
    assert r.status_code == 200, r.text
    assert [p["status"] for p in pages_of(h, alert["id"])] == ["sent", "acknowledged", "sent"]
    again = h.client.post(f"/v1/alerts/{alert['id']}/ack", headers=ONCALL,
                          json={"notification_id": ann["id"]})
    assert again.status_code == 409  # the alert is acknowledged once
    assert [p["status"] for p in pages_of(h, alert["id"])] == ["sent", "acknowledged", "sent"]


def test_an_ack_link_of_another_alert_is_refused(h: Harness, bus: InProcessBus) -> None:
    put(h, "north", oncall([member("ann", "log", "ann")]))
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN1", 40))
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN2", 40))
    sweep(h)
    one, two = (the_alert(h, pump_serial=s) for s in ("SN1", "SN2"))
    (page_two,) = pages_of(h, two["id"])
    r = h.client.post(f"/v1/alerts/{one['id']}/ack", headers=ONCALL,
                      json={"notification_id": page_two["id"]})
    assert r.status_code == 422, r.text
    assert pages_of(h, two["id"])[0]["status"] == "sent"


def test_a_page_not_yet_sent_cannot_be_seen(h: Harness, bus: InProcessBus) -> None:
    put(h, "north", oncall_body([("ann", "log", "ann")]))
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=40))
    (page,) = pages_of(h, the_alert(h)["id"])
    r = h.client.post(f"/v1/notifications/{page['id']}/seen", headers=NURSE)
    assert r.status_code == 409 and pages_of(h, the_alert(h)["id"])[0]["seen_at"] is None


def auth_none() -> dict[str, str]:
    return {}


def test_over_rabbitmq_a_flow_reading_pages_the_fallback_when_the_first_provider_is_down(
        tmp_path, pg_database: Callable[[str], str], amqp_url: str) -> None:
    from shared.runtime import Worker
    from tests.helpers import wait_until
    from tests.integration.alerts.test_alerts_pg import publish_flow, rabbit_alerts, start_paging_to

    bus, runtime = rabbit_alerts(tmp_path, pg_database("alerts"), amqp_url, page_sweep_seconds=0.5)
    worker = Worker(runtime)
    with refusing_port() as dead, ntfy_server() as ntfy:
        start_paging_to(None, runtime, worker, oncall([member(
            "ann", "apprise", f"json://127.0.0.1:{dead}/sms-gateway",
            ("apprise", f"ntfy://127.0.0.1:{ntfy.port}/north"))]))
        try:
            publish_flow(bus, "SN-RMQ")
            wait_until(lambda: ntfy.on("north"), what="the page on the fallback", timeout_s=30)
        finally:
            worker.stop()
            bus.close()
    (message,) = ntfy.on("north")
    assert "SN-RMQ" in message["message"]


# ---- re-notify, snooze ---------------------------------------------------------------------------

def levels_paged(h: Harness, alert_id: str) -> list[int]:
    return [p["level"] for p in pages_of(h, alert_id)]


def test_acknowledged_but_unresolved_after_the_centre_s_timeout_pages_level_one_again(
        h: Harness, bus: InProcessBus) -> None:
    put(h, "north", oncall([member("ann", "log", "ann")], [member("bob", "log", "bob")],
                           ack_timeout_seconds=3600))
    assert h.client.get("/v1/oncall/north", headers=NURSE).json()["ack_timeout_seconds"] == 3600
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=40))
    sweep(h)
    clock(h).advance(seconds=900)  # unacknowledged: level 2 is paged
    sweep(h)
    alert = the_alert(h)
    r = h.client.post(f"/v1/alerts/{alert['id']}/ack", headers=ONCALL)
    assert r.status_code == 200 and r.json()["wake_at"] == "2026-11-02T09:15:00Z", r.text
    clock(h).advance(seconds=3599)
    assert "woken" not in sweep(h) and levels_paged(h, alert["id"]) == [1, 2]
    clock(h).advance(seconds=2)
    assert sweep(h)["woken"] == 1
    assert sweep(h).get("woken") is None  # once
    again = the_alert(h)
    assert (again["status"], again["acknowledged_by"], again["wake_at"]) == ("firing", None, None)
    assert levels_paged(h, alert["id"]) == [1, 2, 1]
    assert actions(h, alert["id"])[-3:] == ["woke", "page_planned", "paged"]
    deliver([h], bus)  # the outbox relays what the sweep published
    assert [e["data"]["status"] for e in published(bus, EventType.ALERT_RAISED)] == ["firing", "firing"]
    clock(h).advance(seconds=901)  # its escalation starts over
    sweep(h)
    assert levels_paged(h, alert["id"]) == [1, 2, 1, 2]


def test_the_default_acknowledgement_timeout_is_the_setting(h: Harness, bus: InProcessBus) -> None:
    put(h, "north", oncall([member("ann", "log", "ann")]))
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=40))
    alert = the_alert(h)
    h.client.post(f"/v1/alerts/{alert['id']}/ack", headers=ONCALL)
    assert the_alert(h)["wake_at"] == "2026-11-02T12:00:00Z"  # 4 h
    clock(h).advance(hours=2)
    assert h.client.post(f"/v1/alerts/{alert['id']}/resolve", headers=ONCALL,
                         json={"resolution": "refilled"}).status_code == 200
    clock(h).advance(hours=3)
    assert "woken" not in sweep(h) and the_alert(h)["status"] == "resolved"


def test_a_snoozed_alert_wakes_at_until_and_pages_level_one(h: Harness, bus: InProcessBus) -> None:
    put(h, "north", oncall([member("ann", "log", "ann")], [member("bob", "log", "bob")]))
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=40))
    sweep(h)
    alert = the_alert(h)
    url = f"/v1/alerts/{alert['id']}/snooze"
    body = {"until": "2026-11-02T08:30:00Z", "reason": "pump being checked at the bedside"}
    r = h.client.post(url, json=body, headers=NURSE)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["wake_at"]) == ("acknowledged", "2026-11-02T08:30:00Z")
    clock(h).advance(seconds=1200)  # no escalation while snoozed
    sweep(h)
    assert levels_paged(h, alert["id"]) == [1]
    clock(h).advance(seconds=600)
    assert sweep(h)["woken"] == 1 and levels_paged(h, alert["id"]) == [1, 1]
    assert "snoozed" in actions(h, alert["id"])


@pytest.mark.parametrize(("body", "field"), [
    ({"until": "2026-11-02T07:59:59Z", "reason": "r"}, "until"),  # past
    ({"until": "2026-11-02T08:00:00Z", "reason": "r"}, "until"),  # now
    ({"until": "2026-11-03T08:00:01Z", "reason": "r"}, "until"),  # beyond 24 h
    ({"until": "2026-11-02T09:00:00", "reason": "r"}, "until"),  # no zone
    ({"until": "2026-11-02T09:00:00Z"}, "reason"),
    ({"until": "2026-11-02T09:00:00Z", "reason": "r\x00"}, "reason"),
    ({"until": "2026-11-02T09:00:00Z", "reason": "r", "level": 3}, "level"),
])
def test_snooze_input_is_checked_and_nothing_changes(h: Harness, bus: InProcessBus,
                                                     body: dict[str, Any], field: str) -> None:
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=40))
    alert = the_alert(h)
    r = h.client.post(f"/v1/alerts/{alert['id']}/snooze", json=body, headers=NURSE)
    assert r.status_code == 422 and field in r.text, r.text
    assert the_alert(h) == alert


def test_snoozing_a_resolved_or_unknown_alert_is_refused(h: Harness, bus: InProcessBus) -> None:
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=40))
    alert = the_alert(h)
    h.client.post(f"/v1/alerts/{alert['id']}/resolve", headers=ONCALL, json={"resolution": "ok"})
    body = {"until": "2026-11-02T09:00:00Z", "reason": "r"}
    assert h.client.post(f"/v1/alerts/{alert['id']}/snooze", json=body, headers=NURSE).status_code == 409
    assert h.client.post("/v1/alerts/nope/snooze", json=body, headers=NURSE).status_code == 404
    assert h.client.post(f"/v1/alerts/{alert['id']}/snooze", json=body).status_code == 401


# ---- holds that end --------------------------------------------------------------------------------

def silence(h: Harness, key: str, ends_at: str, **matchers: str) -> str:
    r = h.client.post("/v1/silences", headers={**ONCALL, "Idempotency-Key": key}, json={
        "matchers": matchers, "starts_at": "2026-11-02T07:00:00Z", "ends_at": ends_at,
        "reason": "maintenance"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_alerts_a_silence_held_back_are_paged_when_it_ends_once(h: Harness, bus: InProcessBus) -> None:
    put(h, "north", oncall([member("ann", "log", "ann")]))
    first = silence(h, "s1", "2026-11-02T09:00:00Z", center="north")
    second = silence(h, "s2", "2026-11-02T10:00:00Z", pump_serial="SN2")
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN1", 40))
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN2", 40))
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN3", 40))
    sn1, sn2, sn3 = (the_alert(h, pump_serial=s) for s in ("SN1", "SN2", "SN3"))
    assert {a["silenced_by"] for a in (sn1, sn2, sn3)} == {first}
    h.client.post(f"/v1/alerts/{sn3['id']}/resolve", headers=ONCALL, json={"resolution": "ok"})
    sweep(h)
    assert [pages_of(h, a["id"]) for a in (sn1, sn2, sn3)] == [[], [], []]
    clock(h).advance(hours=1, seconds=1)
    assert sweep(h)["released"] == 2
    assert sweep(h).get("released") is None  # no double page
    assert [len(pages_of(h, a["id"])) for a in (sn1, sn2, sn3)] == [1, 0, 0]
    assert the_alert(h, pump_serial="SN2")["silenced_by"] == second  # still held by the other
    assert actions(h, sn1["id"])[-3:] == ["silence_ended", "page_planned", "paged"]
    clock(h).advance(hours=1)
    assert sweep(h)["released"] == 1
    assert [len(pages_of(h, a["id"])) for a in (sn1, sn2, sn3)] == [1, 1, 0]


def published(bus: InProcessBus, event_type: str) -> list[dict[str, Any]]:
    import json

    return [json.loads(m.body) for m in bus.published if m.routing_key == event_type]


# ---- heartbeat out -----------------------------------------------------------------------------------

def heartbeat_job(h: Harness) -> Any:
    from services.alerts import jobs

    return next((j for j in jobs.jobs(h.runtime) if j.name == "heartbeat_out"), None)


def failures(h: Harness) -> float:
    value = h.runtime.registry.get_sample_value("hai_heartbeat_ping_failures_total")
    return float(value or 0)


def test_the_heartbeat_pings_the_dead_man_s_switch_and_a_failed_ping_is_counted(
        tmp_path, pg_database: Callable[[str], str], bus: InProcessBus) -> None:
    url = pg_database("alerts")
    with webhook(fail_first=1) as switch:
        h = pg_alerts(tmp_path, url, MovableClock(T0), bus, heartbeat_url=switch.url_for("/ping/abc"),
                      heartbeat_interval_seconds=30.0)
        job = heartbeat_job(h)
        assert job is not None and job.interval_seconds == 30.0
        assert job.run(h.runtime) == {"ok": False} and failures(h) == 1  # answered 503
        assert job.run(h.runtime) == {"ok": True} and failures(h) == 1
    (ping,) = switch.on("/ping/abc")
    assert ping == {"service": "alerts", "at": "2026-11-02T08:00:00+00:00"}
    with refusing_port() as dead:
        h2 = pg_alerts(tmp_path, url, MovableClock(T0), bus,
                       heartbeat_url=f"http://127.0.0.1:{dead}/ping/secret-uuid")
        assert heartbeat_job(h2).run(h2.runtime) == {"ok": False} and failures(h2) == 1
    assert heartbeat_job(pg_alerts(tmp_path, url, MovableClock(T0), bus)) is None  # not set: no job


# ---- storms --------------------------------------------------------------------------------------------

def test_a_storm_goes_as_one_page_per_recipient_with_the_list_within_a_rate_limit(
        tmp_path, pg_database: Callable[[str], str], bus: InProcessBus) -> None:
    h = pg_alerts(tmp_path, pg_database("alerts"), MovableClock(T0), bus, page_rate_per_minute=3)
    with webhook() as ann, webhook() as bob:
        put(h, "north", oncall([member("ann", "webhook", ann.url)]))
        put(h, "south", oncall([member("bob", "webhook", bob.url)]))
        for i in range(10):  # a recall sweeps one centre: ten alerts at once
            emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(f"SN{i}", 40))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN-S", 40, center="south"))
        assert sweep(h)["sent"] == 11
        (storm,) = ann.pages
        assert [a["pump_serial"] for a in storm["alerts"]] == [f"SN{i}" for i in range(10)]
        assert storm["alert"] == {k: v for k, v in storm["alerts"][0].items()
                                  if k not in ("notification_id", "ack_url")}
        (single,) = bob.pages
        assert "alerts" not in single and single["alert"]["pump_serial"] == "SN-S"
        alerts = h.client.get("/v1/alerts", params={"center": "north", "limit": 50},
                              headers=NURSE).json()["items"]
        pages = [p for a in alerts for p in pages_of(h, a["id"])]
        assert {p["message_id"] for p in pages} == {storm["notification_id"]}
        assert {p["status"] for p in pages} == {"sent"}
        # the same minute: room for two more messages, then none
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN10", 40))
        sweep(h)
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN11", 40))
        sweep(h)
        # warnings (a critical page is never held: see the tests below)
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN12", 20))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN13", 20))
        assert sweep(h)["claimed"] == 0
        assert len(ann.pages) == 3
        held = the_alert(h, pump_serial="SN12")
        assert actions(h, held["id"])[-1] == "page_held"
        clock(h).advance(seconds=59)
        assert sweep(h)["claimed"] == 0
        clock(h).advance(seconds=2)  # the minute's three messages leave it: room for three
        assert sweep(h)["sent"] == 2
    assert sorted(p["alert"]["pump_serial"] for p in ann.pages[-2:]) == ["SN12", "SN13"]
    assert len(ann.pages) == 5


def overdue(h: Harness, bus: InProcessBus, serial: str) -> str:
    """A sweep's overdue refill of pump `serial` raised (a warning: no projection of empty); its id."""
    emit(h, bus, EventType.REFILL_OVERDUE, refill_overdue(f"appt-{serial}", serial, hours_to_empty=None))
    return str(the_alert(h, pump_serial=serial)["id"])


def abnormal_flow(h: Harness, bus: InProcessBus, serial: str) -> str:
    """An abnormal flow of pump `serial` raised (critical); its id."""
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(serial, 40))
    alert = the_alert(h, pump_serial=serial)
    assert (alert["kind"], alert["severity"]) == ("flow_abnormal", "critical")
    return str(alert["id"])


def messages_of_the_minute(h: Harness, bus: InProcessBus, count: int) -> None:
    """`count` warnings paged to the recipient one message each, a second apart."""
    for i in range(count):
        overdue(h, bus, f"SN-W{i}")
        assert sweep(h)["sent"] == 1
        clock(h).advance(seconds=1)


def paged(h: Harness, alert_id: str) -> dict[str, Any]:
    (entry,) = [e["details"] for e in timeline(h, alert_id) if e["action"] == "paged"]
    return entry


def test_a_full_minute_holds_warnings_but_never_a_critical_page(
        h: Harness, bus: InProcessBus) -> None:
    """A burst's warnings filled the on-call's minute (HAI_PAGE_RATE_PER_MINUTE, 20): an abnormal
    flow still goes at once, as one message past the limit, the flow first and the warning due
    with it listed after it; a warning alone still waits for the minute."""
    with webhook() as ann:
        put(h, "north", oncall([member("ann", "webhook", ann.url)]))
        messages_of_the_minute(h, bus, 20)
        held = overdue(h, bus, "SN-HELD")
        assert sweep(h)["claimed"] == 0
        assert actions(h, held)[-1] == "page_held"
        warning = overdue(h, bus, "SN-WARN")
        clock(h).advance(seconds=1)  # the warning's page is due first
        flow = abnormal_flow(h, bus, "SN-FLOW")
        facts = sweep(h)
        assert (facts["claimed"], facts["sent"]) == (1, 2)
        assert len(ann.pages) == 21
        page = ann.pages[-1]
        assert (page["alert"]["pump_serial"], page["alert"]["severity"]) == ("SN-FLOW", "critical")
        assert [a["pump_serial"] for a in page["alerts"]] == ["SN-FLOW", "SN-WARN"]
        assert paged(h, flow)["past_storm_limit"] is True
        assert paged(h, warning)["past_storm_limit"] is True
        assert {p["message_id"] for a in (flow, warning) for p in pages_of(h, a)} == {
            page["notification_id"]}
        # the limit still holds what is not critical
        assert [p["status"] for p in pages_of(h, held)] == ["pending"]
        assert "paged" not in actions(h, held)
        later = overdue(h, bus, "SN-LATER")
        assert sweep(h)["claimed"] == 0
        assert actions(h, later)[-1] == "page_held"
    assert len(ann.pages) == 21


def test_a_critical_page_behind_a_burst_s_backlog_goes_in_the_first_pass(
        h: Harness, bus: InProcessBus) -> None:
    """More warnings due than one pass claims (CLAIM_BATCH), all older than an abnormal flow's
    page, and the on-call's minute full: the first pass still takes the critical page, at once,
    past the limit, the warnings it claimed with it listed after it; the rest wait."""
    with webhook() as ann:
        put(h, "north", oncall([member("ann", "webhook", ann.url)]))
        messages_of_the_minute(h, bus, 20)
        backlog = [overdue(h, bus, f"SN-B{i}") for i in range(paging.CLAIM_BATCH + 5)]
        clock(h).advance(seconds=1)  # every warning's page is due before the flow's
        flow = abnormal_flow(h, bus, "SN-FLOW")
        facts = sweep(h)
        assert (facts["claimed"], facts["sent"]) == (1, paging.CLAIM_BATCH)
        page = ann.pages[-1]
        assert page["alert"]["pump_serial"] == "SN-FLOW"
        assert len(page["alerts"]) == paging.CLAIM_BATCH
        assert paged(h, flow)["past_storm_limit"] is True
        left = [a for a in backlog if "paged" not in actions(h, a)]
        assert len(left) == 6  # CLAIM_BATCH + 5 warnings, 49 of them carried with the flow


@pytest.fixture(params=["postgresql", "sqlite"])
def either(request: pytest.FixtureRequest, tmp_path, bus: InProcessBus) -> Iterator[Harness]:
    """The alerts service on PostgreSQL, and on SQLite (the embedded default)."""
    url = (request.getfixturevalue("pg_database")("alerts") if request.param == "postgresql"
           else f"sqlite:///{tmp_path}/alerts.db")
    harness = pg_alerts(tmp_path, url, MovableClock(T0), bus, dashboard_url="http://dash.test")
    yield harness
    harness.runtime.engine.dispose()


def test_a_full_minute_holds_a_recipient_s_whole_backlog_in_one_pass(
        either: Harness, bus: InProcessBus) -> None:
    """More warnings due than one pass claims (CLAIM_BATCH), and the on-call's minute full:
    one pass holds them all, once each (not fifty a pass, every pass of every worker claiming
    and holding the next fifty); passes before the minute frees find nothing due; then they go
    (a message listing up to HAI_PAGE_GROUP_MAX while they outnumber the minute's room)."""
    h = either
    with webhook() as ann:
        put(h, "north", oncall([member("ann", "webhook", ann.url)]))
        messages_of_the_minute(h, bus, 20)
        backlog = [overdue(h, bus, f"SN-B{i}") for i in range(paging.CLAIM_BATCH + 5)]
        assert sweep(h)["claimed"] == 0
        assert [actions(h, a).count("page_held") for a in backlog] == [1] * len(backlog)
        assert sweep(h)["claimed"] == 0  # nothing due until the minute frees one
        assert [actions(h, a).count("page_held") for a in backlog] == [1] * len(backlog)
        clock(h).advance(seconds=60)  # the minute's messages leave it
        group_max = h.runtime.settings.page_group_max
        assert (sweep(h)["claimed"], len(ann.pages[-1]["alerts"])) == (1, group_max)
        # the five left, with room for nineteen more messages this minute: a message each
        assert sweep(h)["claimed"] == len(backlog) - group_max
        assert len(ann.pages) == 20 + 1 + len(backlog) - group_max
        assert all("paged" in actions(h, a) for a in backlog)
        assert [actions(h, a).count("page_held") for a in backlog] == [1] * len(backlog)


def test_a_minute_past_its_limit_holds_a_warning_until_a_room_frees_once(
        either: Harness, bus: InProcessBus) -> None:
    """The minute holds 23 messages: 20 warnings', then three abnormal flows' past the limit.
    A warning due then waits until the minute is down to 19, when the 4th oldest message
    leaves it (the 20th latest), not when the oldest does (the room's count read all the
    minute's pages until 2026-12-04, and held the page again each second from there); held
    once, it goes then."""
    h = either
    with webhook() as ann:
        put(h, "north", oncall([member("ann", "webhook", ann.url)]))
        start = clock(h).now()
        messages_of_the_minute(h, bus, 20)  # sent at start + 0 s … 19 s
        for i in range(3):  # sent at start + 20 s … 22 s, past the limit
            flow = abnormal_flow(h, bus, f"SN-F{i}")
            assert sweep(h)["sent"] == 1 and paged(h, flow)["past_storm_limit"] is True
            clock(h).advance(seconds=1)
        held = overdue(h, bus, "SN-HELD")
        assert sweep(h)["claimed"] == 0
        frees_at = start + timedelta(seconds=3 + paging.RATE_WINDOW_SECONDS)
        (hold,) = [e["details"] for e in timeline(h, held) if e["action"] == "page_held"]
        assert datetime.fromisoformat(hold["until"]) == frees_at
        clock(h).advance(seconds=(frees_at - clock(h).now()).total_seconds() - 1)
        assert sweep(h)["claimed"] == 0
        clock(h).advance(seconds=1)
        assert sweep(h)["sent"] == 1
        assert ann.pages[-1]["alert"]["pump_serial"] == "SN-HELD"
        assert actions(h, held).count("page_held") == 1


def test_a_page_whose_claim_ran_out_is_held_as_retrying_and_goes_when_the_minute_frees(
        either: Harness, bus: InProcessBus) -> None:
    """A worker claimed a warning's page and died before recording the send (its lease ran
    out) while the on-call's minute is full: the page waits as `retrying`, not `sending` with no
    lease (which no pass would ever take again), and goes when the minute frees one."""
    from sqlalchemy import update

    from services.alerts.models import Notification

    h = either
    with webhook() as ann:
        put(h, "north", oncall([member("ann", "webhook", ann.url)]))
        messages_of_the_minute(h, bus, 20)
        stuck = overdue(h, bus, "SN-STUCK")
        now = clock(h).now()
        with h.runtime.uow_factory() as uow:
            uow.session.execute(update(Notification).where(Notification.alert_id == stuck).values(
                status="sending", attempts=1, claim_token="dead-worker",
                claimed_until=now - timedelta(seconds=1)))
            uow.commit()
        assert sweep(h)["claimed"] == 0
        assert [(p["status"], p["attempts"]) for p in pages_of(h, stuck)] == [("retrying", 1)]
        assert actions(h, stuck)[-1] == "page_held"
        clock(h).advance(seconds=60)
        assert sweep(h)["sent"] == 1
    assert [(p["status"], p["attempts"]) for p in pages_of(h, stuck)] == [("sent", 2)]
    assert ann.pages[-1]["alert"]["pump_serial"] == "SN-STUCK"


def test_the_urgent_lane_sends_an_abnormal_flow_past_a_full_minute(
        h: Harness, bus: InProcessBus) -> None:
    with webhook() as ann:
        put(h, "north", oncall([member("ann", "webhook", ann.url)]))
        messages_of_the_minute(h, bus, 20)
        flow = abnormal_flow(h, bus, "SN-FLOW")
        facts = paging.sweep_once(h.runtime, alert_ids=[flow], timed=False)
        assert (facts["claimed"], facts["sent"]) == (1, 1)
    page = ann.pages[-1]
    assert len(ann.pages) == 21 and "alerts" not in page
    assert page["alert"]["pump_serial"] == "SN-FLOW"
    assert [(p["status"], p["attempts"]) for p in pages_of(h, flow)] == [("sent", 1)]
    details = paged(h, flow)
    assert (details["lane"], details["past_storm_limit"]) == ("urgent", True)
    assert "page_held" not in actions(h, flow)


def test_a_storm_s_message_puts_its_critical_page_first(h: Harness, bus: InProcessBus) -> None:
    """Room for two more messages and three pages due (two warnings first): one message, whose
    `alert` is the abnormal flow; within the limit, so not past it."""
    with webhook() as ann:
        put(h, "north", oncall([member("ann", "webhook", ann.url)]))
        messages_of_the_minute(h, bus, 18)
        warnings = []
        for serial in ("SN-A", "SN-B"):  # due a second apart, the flow last
            warnings.append(overdue(h, bus, serial))
            clock(h).advance(seconds=1)
        flow = abnormal_flow(h, bus, "SN-FLOW")
        facts = sweep(h)
        assert (facts["claimed"], facts["sent"]) == (1, 3)
    page = ann.pages[-1]
    assert len(ann.pages) == 19
    assert page["alert"]["pump_serial"] == "SN-FLOW"
    assert [a["pump_serial"] for a in page["alerts"]] == ["SN-FLOW", "SN-A", "SN-B"]
    for alert_id in (flow, *warnings):
        assert "past_storm_limit" not in paged(h, alert_id)


def test_a_storm_s_message_is_claimed_in_one_update_however_many_pages_it_lists(
        h: Harness, bus: InProcessBus) -> None:
    """Behind a burst every pass claims a message of up to 50 pages: one UPDATE claims them all
    (50 before), and the recipient's messages of the minute are counted once for the pass."""
    statements: list[str] = []
    with webhook() as ann:
        put(h, "north", oncall([member("ann", "webhook", ann.url)]))
        messages_of_the_minute(h, bus, 18)  # room for two more messages
        for i in range(12):
            overdue(h, bus, f"SN-B{i:02}")
        sa_event.listen(h.runtime.engine, "before_cursor_execute",
                        lambda _c, _cur, statement, *_: statements.append(statement))
        facts = sweep(h)
    assert (facts["claimed"], facts["sent"]) == (1, 12)
    assert [a["pump_serial"] for a in ann.pages[-1]["alerts"]] == [f"SN-B{i:02}" for i in range(12)]
    claims = [s for s in statements  # the claim sets the attempts; the results' record does not
              if s.startswith("UPDATE notifications SET") and "attempts=" in s.split("WHERE")[0]]
    rooms = [s for s in statements if MESSAGES_SENT in s]
    assert (len(claims), len(rooms)) == (1, 1), "\n".join(s.split("\n")[0] for s in statements)
    # the record: the message's twelve PageSent events in one statement at its commit (a COPY,
    # unseen by the engine's events), not one INSERT each, each flushing its page first
    assert not [s for s in statements if s.startswith("INSERT INTO outbox")]
    with h.runtime.uow_factory() as uow:
        outbox = uow.platform.outbox
        sent_events = uow.session.scalar(select(func.count()).select_from(outbox).where(
            outbox.c.routing_key == EventType.PAGE_SENT.value))
    assert sent_events == 18 + 12


def test_a_page_changed_since_the_pass_read_it_is_not_claimed(h: Harness, bus: InProcessBus) -> None:
    """The claim's compare-and-set, one statement for a message's pages: a page another worker
    changed after this pass read it (its attempts, status or claim token) is left to that worker;
    the others (pending, or `sending` whose lease ran out, with their token) are claimed."""
    with webhook() as ann:
        put(h, "north", oncall([member("ann", "webhook", ann.url)]))
        ids = [overdue(h, bus, f"SN-{i}") for i in range(3)]
    page = {alert_id: pages_of(h, alert_id)[0]["id"] for alert_id in ids}
    rt = h.runtime
    with rt.uow_factory() as setup:  # the third's earlier claim, its lease run out
        setup.session.execute(update(Notification).where(Notification.id == page[ids[2]])
                              .values(status="sending", claim_token="old-token",
                                      claimed_until=T0, attempts=1))
        setup.commit()
    with rt.uow_factory() as uow:
        read = list(uow.session.scalars(select(Notification).where(
            Notification.id.in_(list(page.values())))))
        with rt.uow_factory() as other:  # another worker, after this pass read them
            other.session.execute(update(Notification).where(Notification.id == page[ids[1]])
                                  .values(attempts=Notification.attempts + 1))
            other.commit()
        taken = paging._set_each_if_unchanged(uow, read, status="sending", claim_token="mine",
                                              attempts=Notification.attempts + 1)
        uow.commit()
    assert taken == {page[ids[0]], page[ids[2]]}
    with rt.uow_factory() as check:
        rows = {n.id: (n.status, n.claim_token, n.attempts) for n in check.session.scalars(
            select(Notification).where(Notification.id.in_(list(page.values()))))}
    assert rows == {page[ids[0]]: ("sending", "mine", 1), page[ids[1]]: ("pending", None, 1),
                    page[ids[2]]: ("sending", "mine", 2)}


def test_a_pass_records_the_results_of_all_its_pages_in_one_transaction(
        h: Harness, bus: InProcessBus) -> None:
    """The urgent lane is free for the next abnormal flow sooner: the pages a pass sent are
    recorded with one commit, not one each (a pass of three pages commits as often as one of one)."""
    commits: list[int] = []
    sa_event.listen(h.runtime.engine, "commit", lambda _conn: commits.append(1))

    def commits_of_a_pass() -> int:
        before = len(commits)
        sweep(h)
        return len(commits) - before

    with webhook() as hook:
        for center in ("north", "south", "east", "west"):
            put(h, center, oncall([member(center, "webhook", hook.url_for(f"/{center}"))]))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN1", 40, center="north"))
        one = commits_of_a_pass()
        for serial, center in (("SN2", "south"), ("SN3", "east"), ("SN4", "west")):
            emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(serial, 40, center=center))
        three = commits_of_a_pass()
    assert len(hook.pages) == 4
    assert one == three, (one, three)
    for serial in ("SN1", "SN2", "SN3", "SN4"):
        (page,) = pages_of(h, the_alert(h, pump_serial=serial)["id"])
        assert (page["status"], page["attempts"]) == ("sent", 1)
        assert "paged" in actions(h, page["alert_id"])
