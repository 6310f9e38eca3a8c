"""Pages that reach a phone and a loop that closes, on PostgreSQL (and RabbitMQ end to end): apprise
channels over real sockets (a JSON endpoint, a self-hosted ntfy, SMTP), several addresses per member
tried in order, read status per recipient, re-notify and snooze, silences that end, storms, and the
heartbeat out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from services.alerts import paging
from shared.clock import MovableClock
from shared.events import EventType
from shared.messaging.inproc import InProcessBus
from tests.doubles import ntfy_server, refusing_port, smtp_server, webhook
from tests.factories import T0, flow_recorded, oncall_body
from tests.helpers import Harness, emit
from tests.integration.alerts.alerts_testkit import NURSE, ONCALL
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


def clock(h: Harness) -> MovableClock:
    c = h.runtime.clock
    assert isinstance(c, MovableClock)
    return c


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
    assert h.client.post(f"/v1/alerts/{alert['id']}/ack", headers=ONCALL).status_code == 200
    first, second = pages_of(h, alert["id"])
    assert (first["status"], second["status"]) == ("acknowledged", "acknowledged")
    assert h.client.post(seen, headers=NURSE).json()["status"] == "acknowledged"  # never back
    assert [a for a in actions(h, alert["id"]) if a.startswith("page") or a == "acknowledged"] == [
        "page_planned", "paged", "page_delivered", "page_planned", "paged", "page_seen",
        "acknowledged", "page_acknowledged", "page_acknowledged"]


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
    from fastapi.testclient import TestClient

    from services.alerts import app as alerts_app
    from shared.clock import SystemClock
    from shared.events import EVENTS_EXCHANGE, CloudEvent
    from shared.messaging.base import OutgoingMessage
    from shared.messaging.rabbit import RabbitBus
    from shared.migrations import upgrade
    from shared.runtime import Worker
    from tests.helpers import test_settings as make_settings
    from tests.helpers import wait_until

    url = pg_database("alerts")
    settings = make_settings(tmp_path, alerts_database_url=url, amqp_url=amqp_url,
                             page_sweep_seconds=0.5)
    upgrade("alerts", url)
    bus = RabbitBus(amqp_url)
    runtime = alerts_app.bootstrap(settings, clock=SystemClock(), bus=bus)
    worker = Worker(runtime)
    with refusing_port() as dead, ntfy_server() as ntfy:
        client = TestClient(alerts_app.create_app(runtime))
        assert client.put("/v1/oncall/north", headers=ONCALL, json=oncall([member(
            "ann", "apprise", f"json://127.0.0.1:{dead}/sms-gateway",
            ("apprise", f"ntfy://127.0.0.1:{ntfy.port}/north"))])).status_code == 200
        worker.start()
        try:
            event = CloudEvent.create(source="/hai/test", type=EventType.FLOW_RECORDED,
                                      data=flow_recorded("SN-RMQ", 40))
            publisher = bus.publisher()
            publisher.publish_batch([OutgoingMessage(event.id, EVENTS_EXCHANGE, event.type,
                                                     event.to_json_bytes())])
            publisher.close()
            wait_until(lambda: ntfy.on("north"), what="the page on the fallback", timeout_s=30)
        finally:
            worker.stop()
            bus.close()
    (message,) = ntfy.on("north")
    assert "SN-RMQ" in message["message"]
