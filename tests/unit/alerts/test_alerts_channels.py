"""Apprise addresses judged and masked without sending anything; a storm's page as text."""

from __future__ import annotations

import pytest

from services.alerts.channels import PageMessage, address_refusal, mask_address, self_hosted_host

SECRET = "t0psecret"


@pytest.mark.parametrize("address", [
    f"json://user:{SECRET}@pager.example.org/hook",
    f"ntfys://ann:{SECRET}@ntfy.example.org/oncall",
    f"pover://{SECRET}abcdefghijklmnopqrstuvw@{SECRET}bcdefghijklmnopqrstuvw",
    f"twilio://AC{SECRET}aaaaaaaaaaaaaaaaaaaaaaa:{SECRET}aaaaaaaaaaaaaaaaaaaaaaaa@15551234567/15557654321",
    "nosuchservice://" + SECRET,
])
def test_an_apprise_address_is_shown_without_its_secret(address: str) -> None:
    shown = mask_address("apprise", address)
    assert SECRET not in shown and shown.split("://")[0] == address.split("://")[0]


def test_other_channels_are_shown_as_they_are() -> None:
    assert mask_address("email", "ann@h.test") == "ann@h.test"


@pytest.mark.parametrize(("address", "private_ok", "refused"), [
    ("json://127.0.0.1:9000/x", True, False),
    ("json://127.0.0.1:9000/x", False, True),  # production: loopback refused
    ("ntfy://10.0.0.5/t", False, True),
    ("ntfys://ntfy.example.org/t", False, False),
    ("ntfy://mytopic", False, False),  # ntfy.sh's cloud: no host of ours to judge
    ("pover://user@token", False, False),  # a provider's cloud: its host part is a token
    ("mailto://127.0.0.1:25?to=a@b.test", False, True),
    ("json://[::ffff:169.254.169.254]/x", True, True),
    ("gotify://metadata.google.internal/token", True, True),
    ("syslog://", True, True),
    ("windows://", True, True),
])
def test_apprise_addresses_follow_the_webhook_s_rules(address: str, private_ok: bool,
                                                      refused: bool) -> None:
    assert (address_refusal("apprise", address, allow_private=private_ok) is not None) is refused


def test_only_self_hosted_services_have_a_host_to_judge() -> None:
    from services.alerts.channels import apprise_plugin

    assert self_hosted_host(apprise_plugin("json://pager.example.org/x")) == "pager.example.org"
    assert self_hosted_host(apprise_plugin("pover://user@token")) is None


def test_a_storm_s_page_lists_every_alert_with_its_link() -> None:
    first = {"id": "a1", "severity": "critical", "summary": "SN1 flow fast", "patient_mrn": "MRN-1",
             "pump_serial": "SN1", "center": "north", "kind": "flow_abnormal"}
    other = {**first, "id": "a2", "summary": "SN2 flow fast", "pump_serial": "SN2",
             "notification_id": "n2", "ack_url": "http://dash/alerts/a2?n=n2"}
    page = PageMessage(notification_id="n1", channel="log", address="ann", recipient="ann", level=1,
                       alert=first, ack_url="http://dash/alerts/a1?n=n1", others=(other,))
    assert page.title() == "[HAI critical] SN1 flow fast (+1 more alerts)"
    lines = page.text().splitlines()
    assert lines[0] == "2 alerts for you (on-call level 1):"
    assert lines[2].endswith("http://dash/alerts/a1?n=n1") and "SN2" in lines[3]
    assert [a["notification_id"] for a in page.body()["alerts"]] == ["n1", "n2"]
