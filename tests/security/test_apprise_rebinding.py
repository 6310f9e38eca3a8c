"""DNS rebinding against apprise pages, on real sockets: the host of a self-hosted service's URL
is resolved once and checked, and the page goes to the addresses checked, whatever the name
answers by the time apprise connects (requests for HTTP, smtplib for e-mail); over TLS the
certificate is still checked against the name."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.alerts.channels import Channels, PageMessage, SendError
from tests.doubles import connection_counter, smtp_server, tls_for, webhook
from tests.helpers import test_settings

NAME = "pager.rebind.test"
CHECKED, REBOUND = "127.0.0.1", "127.0.0.2"  # what the name answers the check, then the send


class Rebinding:
    """`socket.getaddrinfo` with a name whose answer changes: NAME resolves to CHECKED the first
    time it is asked and to REBOUND every time after; other names as before."""

    def __init__(self, resolve: Callable[..., Any]) -> None:
        self.resolve = resolve
        self.asked = 0

    def __call__(self, host: Any, port: Any, family: int = 0, type: int = 0,  # noqa: A002
                 proto: int = 0, flags: int = 0) -> Any:
        if (host.decode() if isinstance(host, bytes) else host) != NAME:
            return self.resolve(host, port, family, type, proto, flags)
        self.asked += 1
        address = CHECKED if self.asked == 1 else REBOUND
        return self.resolve(address, port, family, type, proto, flags | socket.AI_NUMERICHOST)


@pytest.fixture
def rebinding(monkeypatch: pytest.MonkeyPatch) -> Rebinding:
    stub = Rebinding(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", stub)
    return stub


def channels(tmp_path: Path) -> Channels:
    return Channels(test_settings(tmp_path, page_timeout_seconds=3.0))


def refusal(tmp_path: Path, address: str) -> str | None:
    """Send one page to `address`: None when it was taken, else why not."""
    try:
        channels(tmp_path).send(page_to(address))
    except SendError as exc:
        return str(exc)
    return None


def page_to(address: str) -> PageMessage:
    return PageMessage(notification_id="n1", channel="apprise", address=address, recipient="ann",
                       level=1, ack_url="http://dash.test/alerts/a1?n=n1", alert={
                           "id": "a1", "kind": "flow_abnormal", "severity": "critical",
                           "summary": "SN1 flow fast", "patient_mrn": "MRN-1",
                           "pump_serial": "SN1", "center": "north"})


def test_an_http_page_goes_to_the_address_checked_not_to_the_one_the_name_answers_later(
        tmp_path: Path, rebinding: Rebinding) -> None:
    with webhook() as checked, connection_counter(REBOUND, checked.port) as rebound:
        refused = refusal(tmp_path, f"json://{NAME}:{checked.port}/page")
    assert rebound.connections == 0 and refused is None, refused
    (posted,) = checked.on("/page")
    assert "SN1" in posted["message"]
    assert rebinding.asked == 1  # the check asked; the send did not ask again


def test_an_smtp_page_goes_to_the_address_checked(tmp_path: Path, rebinding: Rebinding) -> None:
    with smtp_server() as (port, inbox), connection_counter(REBOUND, port) as rebound:
        refused = refusal(tmp_path, f"mailto://{NAME}:{port}?from=pager@hai.test&to=bob@h.test")
    assert rebound.connections == 0 and refused is None, refused
    ((_, rcpts, content),) = inbox.messages
    assert rcpts == ["bob@h.test"] and "SN1" in content and rebinding.asked == 1


def test_over_tls_the_page_goes_to_the_address_checked_and_the_certificate_names_the_host(
        tmp_path: Path, rebinding: Rebinding, monkeypatch: pytest.MonkeyPatch) -> None:
    context, ca = tls_for(NAME, tmp_path)  # a certificate for the name only, no IP address
    asked_for: list[str | None] = []
    context.sni_callback = lambda _sock, server_name, _ctx: asked_for.append(server_name)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))  # requests trusts the test's CA
    with webhook(tls=context) as checked, connection_counter(REBOUND, checked.port) as rebound:
        refused = refusal(tmp_path, f"jsons://{NAME}:{checked.port}/page")
        assert rebound.connections == 0 and refused is None, refused
        assert asked_for == [NAME] and len(checked.on("/page")) == 1
        # the certificate is still verified against the URL's name: the same server under
        # another name that reaches it (localhost) is refused
        assert refusal(tmp_path, f"jsons://localhost:{checked.port}/page")
        assert asked_for[1:] == ["localhost"] and len(checked.on("/page")) == 1


def test_a_name_that_resolves_nowhere_at_the_check_is_not_sent(tmp_path: Path) -> None:
    assert "cannot resolve pager.invalid" in (refusal(tmp_path, "json://pager.invalid/page") or "")

