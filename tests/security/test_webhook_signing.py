"""Webhook pages are signed the Standard Webhooks way with the centre's secret, and go only where
a pager may be (CONTRACT, Alerts): link-local and metadata addresses never, loopback and private
ranges not in production unless HAI_WEBHOOK_ALLOW_PRIVATE; checked when the on-call table is set
and again, on the resolved address, when a page is sent; redirects are not followed.

Pages go to real local HTTP receivers (port 0); signatures are checked with the
`standardwebhooks` package, as a receiver would."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from services.alerts import paging
from services.alerts.channels import Channels
from services.alerts.webhooks import new_secret
from shared.clock import MovableClock
from shared.events import EventType
from shared.messaging.inproc import InProcessBus
from shared.migrations import upgrade
from tests.doubles import webhook
from tests.factories import T0, flow_recorded, oncall_body
from tests.helpers import Harness, auth, emit, start_service
from tests.helpers import test_settings as make_settings
from tests.integration.alerts.alerts_testkit import NURSE, ONCALL

PROD_SECRET = "a-production-secret-for-the-webhook-tests-0123456789"
ALWAYS_REFUSED = [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://169.254.170.2/v2/credentials",
    "http://[fe80::1]/page",
    "http://[fe80::a9fe:a9fe%25eth0]/page",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://METADATA.google.internal./computeMetadata/v1/",
    "http://2852039166/latest",  # 169.254.169.254 as one number
    "http://0xa9fea9fe/latest",
    "http://[::ffff:169.254.169.254]/latest",
    "http://[fd00:ec2::254]/latest",
    "http://100.100.100.200/latest",
]
PRIVATE = ["http://127.0.0.1:9/page", "http://localhost/page", "http://pager.localhost/page",
           "http://[::1]/page", "http://10.20.30.40/page", "http://192.168.1.5/page",
           "http://172.16.0.9/page", "http://0.0.0.0/page", "http://0x7f000001/page"]


@pytest.fixture
def bus() -> InProcessBus:
    return InProcessBus()


def _harness(tmp_path: Path, bus: InProcessBus, **settings: Any) -> Harness:
    return start_service("alerts", make_settings(tmp_path, dashboard_url="http://dash.test",
                                                 page_timeout_seconds=5.0, **settings),
                         clock=MovableClock(T0), bus=bus)


@pytest.fixture
def h(tmp_path: Path, bus: InProcessBus) -> Iterator[Harness]:
    harness = _harness(tmp_path, bus)
    yield harness
    harness.runtime.engine.dispose()


def _production(tmp_path: Path, bus: InProcessBus, **settings: Any) -> tuple[Harness, dict[str, str]]:
    harness = _harness(tmp_path, bus, env="production", amqp_url="amqp://unused/",
                       jwt_secret=PROD_SECRET, **settings)
    return harness, auth("oncall", sub="oncall-olga", secret=PROD_SECRET, centers=["*"])


def _put(h: Harness, center: str, body: dict[str, Any], headers: dict[str, str] = ONCALL) -> Any:
    return h.client.put(f"/v1/oncall/{center}", json=body, headers=headers)


def _page_once(h: Harness, bus: InProcessBus, *, center: str = "north",
               reader: dict[str, str] = NURSE) -> dict[str, Any]:
    """Raise a critical flow alert in `center`, run one pager sweep; the alert's page."""
    emit(h, bus, EventType.FLOW_RECORDED, flow_recorded(deviation_pct=30, center=center))
    paging.sweep_once(h.runtime)
    alert = h.client.get("/v1/alerts", params={"center": center}, headers=reader).json()["items"][0]
    (notification,) = h.client.get("/v1/notifications", params={"alert_id": alert["id"]},
                                   headers=reader).json()["items"]
    return dict(notification)


def test_every_webhook_page_is_signed_with_the_centres_secret(h: Harness, bus: InProcessBus) -> None:
    with webhook() as north_hook, webhook() as south_hook:
        north = _put(h, "north", oncall_body([("ann", "webhook", north_hook.url)]))
        assert north.status_code == 200, north.text
        secret = north.json()["webhook_secret"]
        assert secret.startswith("whsec_")
        south_secret = _put(h, "south", oncall_body([("sue", "webhook", south_hook.url)])).json()[
            "webhook_secret"]
        assert south_secret != secret

        notification = _page_once(h, bus)
        assert notification["status"] == "sent"
        ((headers, body),) = north_hook.received
        page = Webhook(secret).verify(body, headers)
        assert page["recipient"] == "ann" and page["alert"]["patient_mrn"] == "MRN-1"
        assert headers["webhook-id"] == notification["id"]
        assert headers["webhook-signature"].startswith("v1,")
        with pytest.raises(WebhookVerificationError):
            Webhook(south_secret).verify(body, headers)  # another centre's secret
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(body.replace(b"MRN-1", b"MRN-2"), headers)  # a tampered body

        # the secret is never shown back by a GET
        for path in ("/v1/oncall/north", "/v1/oncall/north/now",
                     f"/v1/notifications?alert_id={notification['alert_id']}",
                     f"/v1/alerts/{notification['alert_id']}"):
            shown = h.client.get(path, headers=NURSE)
            assert shown.status_code == 200 and "whsec_" not in shown.text, path

        # a PUT without a secret keeps the one there (and does not show it)
        again = _put(h, "north", oncall_body([("ann", "webhook", north_hook.url)]))
        assert again.status_code == 200 and again.json()["webhook_secret"] is None
        assert "whsec_" not in again.text


def test_the_on_call_sets_its_own_secret_and_a_bad_one_is_422(h: Harness, bus: InProcessBus) -> None:
    chosen = new_secret()
    with webhook() as hook:
        body = {**oncall_body([("ann", "webhook", hook.url)]), "webhook_secret": chosen}
        r = _put(h, "north", body)
        assert r.status_code == 200 and r.json()["webhook_secret"] is None  # not shown back
        _page_once(h, bus)
        ((headers, raw),) = hook.received
        assert Webhook(chosen).verify(raw, headers)["recipient"] == "ann"
    for bad in ("not-a-secret", "whsec_%%%", "whsec_c2hvcnQ="):
        refused = _put(h, "north", {**oncall_body([("ann", "log", "ann")]), "webhook_secret": bad})
        assert refused.status_code == 422
        assert [e["field"] for e in refused.json()["errors"]] == ["webhook_secret"]
        assert bad not in refused.text  # the secret is not echoed back either


@pytest.mark.parametrize("address", ALWAYS_REFUSED)
def test_link_local_and_metadata_addresses_are_refused_even_outside_production(
        h: Harness, address: str) -> None:
    body = oncall_body([("ann", "log", "ann"), ("eve", "webhook", address)])
    r = _put(h, "north", body)
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["levels.0.members.1.address"]
    assert h.client.get("/v1/oncall/north", headers=NURSE).status_code == 404


def test_production_refuses_loopback_and_private_ranges_unless_the_setting_allows(
        tmp_path: Path, bus: InProcessBus) -> None:
    prod, oncall = _production(tmp_path / "strict", bus)
    for address in PRIVATE:
        r = _put(prod, "north", oncall_body([("ann", "webhook", address)]), oncall)
        assert r.status_code == 422, address
        assert r.json()["errors"][0]["field"] == "levels.0.members.0.address"
        assert "HAI_WEBHOOK_ALLOW_PRIVATE" in r.json()["detail"]
    public = _put(prod, "north", oncall_body([("ann", "webhook", "https://pager.example.org/hai")]),
                  oncall)
    assert public.status_code == 200
    allowing, oncall = _production(tmp_path / "allowing", InProcessBus(), webhook_allow_private=True)
    for address in PRIVATE:
        assert _put(allowing, "north", oncall_body([("ann", "webhook", address)]),
                    oncall).status_code == 200, address
    for address in ALWAYS_REFUSED:
        assert _put(allowing, "north", oncall_body([("ann", "webhook", address)]),
                    oncall).status_code == 422, address


def _resolving_to(ip: str) -> Any:
    """A resolver that answers every name with `ip` (a DNS record re-pointed after the PUT)."""
    def resolve(host: str, port: int) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]
    return resolve


def test_the_address_is_checked_again_when_the_page_is_sent(tmp_path: Path, bus: InProcessBus) -> None:
    with webhook() as hook:
        port = hook.port
        address = f"http://pager.hospital.example:{port}/page"  # a public-looking name
        prod, oncall = _production(tmp_path / "strict", bus)
        assert _put(prod, "north", oncall_body([("ann", "webhook", address)]), oncall).status_code == 200
        paging.pager(prod.runtime).channels = Channels(prod.runtime.settings,
                                                       resolve=_resolving_to("127.0.0.1"))
        refused = _page_once(prod, bus, reader=oncall)
        assert refused["status"] == "retrying"
        assert "address refused" in refused["error"] and "loopback" in refused["error"]
        assert hook.received == []

        # where private addresses are allowed the page goes to the address checked, for the name
        allowing, oncall = _production(tmp_path / "allowing", InProcessBus(), webhook_allow_private=True)
        r = _put(allowing, "north", oncall_body([("ann", "webhook", address)]), oncall)
        paging.pager(allowing.runtime).channels = Channels(allowing.runtime.settings,
                                                           resolve=_resolving_to("127.0.0.1"))
        sent = _page_once(allowing, allowing.runtime.bus, reader=oncall)  # type: ignore[arg-type]
        assert sent["status"] == "sent"
        ((headers, body),) = hook.received
        assert {k.lower(): v for k, v in headers.items()}["host"] == f"pager.hospital.example:{port}"
        assert Webhook(r.json()["webhook_secret"]).verify(body, headers)["recipient"] == "ann"


def test_a_name_that_resolves_to_the_metadata_address_is_refused_outside_production_too(
        h: Harness, bus: InProcessBus) -> None:
    ok = _put(h, "north", oncall_body([("ann", "webhook", "http://pager.example.org/p")]))
    assert ok.status_code == 200
    paging.pager(h.runtime).channels = Channels(h.runtime.settings,
                                                resolve=_resolving_to("169.254.169.254"))
    refused = _page_once(h, bus)
    assert refused["status"] == "retrying" and "metadata" in refused["error"]


def test_a_redirect_is_not_followed(h: Harness, bus: InProcessBus) -> None:
    with webhook() as elsewhere, webhook(redirect_to="") as redirecting:
        redirecting.redirect_to = elsewhere.url
        _put(h, "north", oncall_body([("ann", "webhook", redirecting.url)]))
        notification = _page_once(h, bus)
        assert (notification["status"], notification["error"]) == ("retrying", "webhook: HTTP 307")
        assert len(redirecting.received) == 1 and elsewhere.received == []


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_migration_gives_every_existing_on_call_table_a_secret(tmp_path: Path, backend: str,
                                                                   request: Any) -> None:
    url = (f"sqlite:///{tmp_path}/alerts.db" if backend == "sqlite"
           else request.getfixturevalue("pg_database")("alerts"))
    upgrade("alerts", url, "73ab1bb6d35e")  # the schema before webhook signing
    engine = create_engine(url)
    with engine.begin() as conn:
        for center in ("north", "south"):
            conn.execute(text("INSERT INTO oncall_schedules (center, escalation_delay_seconds, levels,"
                              " updated_at, updated_by) VALUES (:c, 900, '[]', :at, 'olga')"),
                         {"c": center, "at": T0})
    upgrade("alerts", url)
    with engine.connect() as conn:
        secrets = dict(conn.execute(text("SELECT center, webhook_secret FROM oncall_schedules")).all())
    engine.dispose()
    assert set(secrets) == {"north", "south"} and len(set(secrets.values())) == 2
    for secret in secrets.values():
        assert secret.startswith("whsec_") and Webhook(secret)  # a key the package accepts
