"""How a page reaches a person: webhook (HTTP POST of JSON), email (SMTP), apprise (one URL per
address: SMS providers, ntfy, Pushover, e-mail, chat...), or the log. A member's addresses are
tried in order within one attempt: the first that takes the page ends it.

An apprise URL carries its provider's secrets (tokens, passwords): the API shows it masked the
way apprise itself masks it (`mask_address`), and an error or a log line names only that form.
Addresses of self-hosted services (json, ntfy, gotify, mailto...: the schemes apprise also
speaks over plain HTTP or SMTP) keep to the webhook's address rules: judged by their literal host
when the on-call table is set, and by every address the host resolves to before each send; apprise
then connects to those addresses only (`pinning`: its own lookup of the name is pinned to them).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import smtplib
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx
import structlog

from services.alerts.pinning import pinned
from services.alerts.settings import AlertsSettings
from services.alerts.webhooks import (
    AddressRefused,
    Resolver,
    private_allowed,
    refusal_of_ip,
    refusal_of_url,
    resolve_target,
    signature_headers,
    system_resolver,
)
from shared import tracing
from shared.contracts.vocabulary import Severity

log = structlog.get_logger(__name__)
# apprise's own log lines may carry a provider's URL or answer: only its errors, and they say
# nothing of the secret (the failure we record names the masked URL)
logging.getLogger("apprise").setLevel(logging.CRITICAL)

# apprise schemes that act on this machine (its log, its desktop), not on a recipient's phone
LOCAL_APPRISE_SCHEMES = frozenset({"syslog", "dbus", "kde", "qt", "glib", "gnome", "macosx",
                                   "windows", "rsyslog"})


class SendError(Exception):
    """The page did not reach its recipient (it will be retried or escalated)."""


@dataclass(frozen=True)
class Delivery:
    """How a page got through: which of the member's addresses took it, and what the channel
    said of it."""

    route: int = 0  # 0: the first address; n: the n-th fallback
    delivered: bool = False  # the channel said the page reached the device
    failed: tuple[str, ...] = ()  # why each address tried before it did not take the page


@dataclass(frozen=True)
class PageMessage:
    """One page, ready to send: everything it carries, and no more patient data than that."""

    notification_id: str
    channel: str
    address: str
    recipient: str
    level: int
    alert: dict[str, Any]
    ack_url: str
    # signs a webhook page; kept out of the repr so that no log line carries it
    webhook_secret: str | None = field(default=None, repr=False)
    # the member's other addresses, tried in order after `address`; an apprise URL holds secrets
    fallbacks: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    # a storm's other alerts for the same recipient, in the same page ({..., notification_id, ack_url})
    others: tuple[dict[str, Any], ...] = ()

    def routes(self) -> list[tuple[str, str]]:
        """(channel, address) of every address of the member, in the order they are tried."""
        return [(self.channel, self.address), *self.fallbacks]

    def body(self) -> dict[str, Any]:
        """The webhook body of the contract: {alert, level, recipient, ack_url} (+ notification_id);
        a storm's page also lists every alert it carries in `alerts`."""
        body = {"alert": self.alert, "level": self.level, "recipient": self.recipient,
                "ack_url": self.ack_url, "notification_id": self.notification_id}
        if self.others:
            body["alerts"] = [{**self.alert, "notification_id": self.notification_id,
                               "ack_url": self.ack_url}, *self.others]
        return body

    def title(self) -> str:
        """One line: severity and summary (a storm's page: how many alerts)."""
        more = f" (+{len(self.others)} more alerts)" if self.others else ""
        return f"[HAI {self.alert.get('severity')}] {self.alert.get('summary')}{more}"

    def text(self) -> str:
        """The page as text (email, SMS, push): no names, the MRN, pump, centre and the ack link;
        a storm's page, one line per alert."""
        a = self.alert
        if self.others:
            return "\n".join([f"{len(self.others) + 1} alerts for you (on-call level {self.level}):", ""]
                             + [f"- {str(x.get('severity')).upper()} {x.get('summary')} "
                                f"(MRN {x.get('patient_mrn') or '-'}, pump {x.get('pump_serial') or '-'}, "
                                f"center {x.get('center') or '-'}): {x.get('ack_url')}"
                                for x in self.body()["alerts"]])
        return "\n".join([
            f"{str(a.get('severity')).upper()} alert ({a.get('kind')}), on-call level {self.level}",
            "",
            f"{a.get('summary')}",
            "",
            f"MRN:    {a.get('patient_mrn') or '-'}",
            f"Pump:   {a.get('pump_serial') or '-'}",
            f"Center: {a.get('center') or '-'}",
            "",
            f"Acknowledge: {self.ack_url}",
        ])


def page_alert(alert: dict[str, Any]) -> dict[str, Any]:
    """The alert as a page shows it: MRN, pump, center, summary; no names, no clinical details."""
    keep = ("id", "kind", "severity", "status", "patient_mrn", "pump_serial", "center", "summary",
            "first_raised_at", "last_raised_at", "occurrences", "escalation_level")
    return {k: alert.get(k) for k in keep}


class Channels:
    """The senders of every channel; one per runtime (its HTTP client keeps connections warm)."""

    def __init__(self, settings: AlertsSettings, *, resolve: Resolver = system_resolver) -> None:
        self.settings = settings
        self.resolve = resolve
        # never follow a redirect: it could lead anywhere, past the address checks
        self.http = self._client()
        # pages go to a checked address, not a name; over TLS a kept connection was verified for
        # one name, so each name has its own connections
        self._tls: dict[str, httpx.Client] = {}
        self._tls_lock = threading.Lock()

    def _client(self) -> httpx.Client:
        return httpx.Client(timeout=self.settings.page_timeout_seconds, follow_redirects=False)

    def _client_for(self, tls_server_name: str | None) -> httpx.Client:
        if tls_server_name is None:
            return self.http
        with self._tls_lock:
            client = self._tls.get(tls_server_name)
            if client is None:
                client = self._tls[tls_server_name] = self._client()
            return client

    def send(self, page: PageMessage) -> Delivery:
        """Send a page to the member's addresses in order until one takes it; raise SendError
        (every address's failure) when none did."""
        failed: list[str] = []
        for route, (channel, address) in enumerate(page.routes()):
            try:
                delivered = self._send_to(page, channel, address)
            except SendError as exc:
                failed.append(str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - any failure of a channel: try the next address
                failed.append(f"{channel}: {type(exc).__name__}")
                continue
            return Delivery(route=route, delivered=delivered, failed=tuple(failed))
        raise SendError("; ".join(failed))

    def _send_to(self, page: PageMessage, channel: str, address: str) -> bool:
        """Send to one address; True when the channel said the page reached the device."""
        if channel == "webhook":
            return self._webhook(page, address)
        if channel == "email":
            self._email(page, address)
        elif channel == "apprise":
            self._apprise(page, address)
        elif channel == "log":
            # ids only in logs: the MRN stays out
            log.warning("page.log", notification_id=page.notification_id,
                        alert_id=page.alert.get("id"), kind=page.alert.get("kind"),
                        severity=page.alert.get("severity"), level=page.level,
                        recipient_id=page.recipient, ack_url=page.ack_url)
        else:
            raise SendError(f"unknown channel {channel!r}")
        return False

    def _webhook(self, page: PageMessage, address: str) -> bool:
        if not page.webhook_secret:
            raise SendError("webhook: the on-call table has no signing secret; set one (PUT)")
        try:
            target = resolve_target(address, allow_private=private_allowed(self.settings),
                                    resolve=self.resolve)
        except AddressRefused as exc:
            raise SendError(f"webhook: address refused: {exc}") from exc
        body = json.dumps(page.body(), separators=(",", ":")).encode()
        # the receiver judges the signature's age on its own clock: the wall clock, not ours
        signed = signature_headers(page.webhook_secret, message_id=page.notification_id,
                                   body=body, at=datetime.now(UTC))
        headers = {"content-type": "application/json", "host": target.host_header,
                   "Idempotency-Key": page.notification_id, **signed}
        traceparent = tracing.current_traceparent()  # the page's trace goes with it, when on
        if traceparent:
            headers["traceparent"] = traceparent
        extensions = {"sni_hostname": target.tls_server_name} if target.tls_server_name else {}
        try:
            response = self._client_for(target.tls_server_name).post(
                target.url, content=body, headers=headers, extensions=extensions)
        except httpx.HTTPError as exc:
            raise SendError(f"webhook: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 300:
            raise SendError(f"webhook: HTTP {response.status_code}")
        return _says_delivered(response)

    def _apprise(self, page: PageMessage, address: str) -> None:
        shown = mask_address("apprise", address)
        plugin = apprise_plugin(address)
        if plugin is None:
            raise SendError(f"apprise: {shown} is not a URL apprise can send to")
        host = self_hosted_host(plugin)
        if host is None:
            self._apprise_notify(page, plugin, shown)
            return
        try:
            addresses = checked_addresses(host, allow_private=private_allowed(self.settings),
                                          resolve=self.resolve)
        except AddressRefused as exc:
            raise SendError(f"apprise: {shown}: address refused: {exc}") from exc
        # apprise resolves the name again when it connects: there, in this thread, the name
        # resolves to the addresses just checked and to no other (DNS rebinding gains nothing)
        with pinned(host, addresses):
            self._apprise_notify(page, plugin, shown)

    def _apprise_notify(self, page: PageMessage, plugin: Any, shown: str) -> None:
        plugin.socket_connect_timeout = plugin.socket_read_timeout = self.settings.page_timeout_seconds
        # as the webhook's: never follow a redirect (it could lead past the address checks), and
        # in production never send a page over TLS left unverified by its URL's `verify=no`
        plugin.redirects = False
        if self.settings.env == "production":
            plugin.verify_certificate = True
        critical = page.alert.get("severity") == Severity.CRITICAL
        notify_type = _apprise_module().NotifyType
        ok = plugin.notify(body=page.text(), title=page.title(),
                           notify_type=notify_type.FAILURE if critical else notify_type.WARNING)
        if not ok:
            raise SendError(f"apprise: {shown} did not take the page")

    def _email(self, page: PageMessage, address: str) -> None:
        msg = EmailMessage()
        msg["From"] = self.settings.smtp_from
        msg["To"] = address
        msg["Subject"] = page.title()
        msg["X-HAI-Notification-Id"] = page.notification_id
        msg.set_content(page.text())
        try:
            with smtplib.SMTP(self.settings.smtp_host, self.settings.smtp_port,
                              timeout=self.settings.page_timeout_seconds) as smtp:
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            raise SendError(f"email: {type(exc).__name__}: {exc}") from exc

    def warm_up(self) -> None:
        """Load apprise's plugins in the background (about a second and a half: not on the
        first page's time)."""
        threading.Thread(target=lambda: apprise_plugin("json://localhost/"), daemon=True,
                         name="alerts-apprise-warm-up").start()

    def close(self) -> None:
        self.http.close()
        with self._tls_lock:
            for client in self._tls.values():
                client.close()


def _says_delivered(response: httpx.Response) -> bool:
    """A webhook receiver that put the page on the device may answer `{"delivered": true}`."""
    if "json" not in response.headers.get("content-type", ""):
        return False
    try:
        answer = response.json()
    except ValueError:
        return False
    return isinstance(answer, dict) and answer.get("delivered") is True


# ---- apprise addresses ---------------------------------------------------------------------

def _apprise_module() -> Any:
    """apprise, imported on first use (its import and plugin scan take over a second)."""
    import apprise

    return apprise


def apprise_plugin(address: str) -> Any | None:
    """The apprise notifier of a URL, or None when apprise cannot send to it (or it acts on this
    machine rather than reaching a person)."""
    scheme = address.split(":", 1)[0].lower()
    if scheme in LOCAL_APPRISE_SCHEMES:
        return None
    try:
        return _apprise_module().Apprise.instantiate(address, suppress_exceptions=True) or None
    except Exception:  # noqa: BLE001 - a URL apprise chokes on is one it cannot send to
        return None


def self_hosted_host(plugin: Any) -> str | None:
    """The server a self-hosted service's URL names (json, ntfy, gotify, mailto...: the services
    apprise also speaks to in plain text); None for a provider's cloud (its host part is a token)."""
    if not getattr(type(plugin), "protocol", None):
        return None
    host = getattr(plugin, "smtp_host", None) or getattr(plugin, "host", None)
    return str(host).strip("[]") if host else None


def mask_address(channel: str, address: str) -> str:
    """An address as the API and the logs show it: an apprise URL with its secrets masked."""
    if channel != "apprise":
        return address
    plugin = apprise_plugin(address)
    if plugin is None:
        return address.split(":", 1)[0] + "://****"
    try:
        return str(plugin.url(privacy=True))
    except Exception:  # noqa: BLE001 - never show what could not be masked
        return address.split(":", 1)[0] + "://****"


def address_refusal(channel: str, address: str, *, allow_private: bool) -> str | None:
    """Why a member's address is refused when the on-call table is set (judged without DNS)."""
    if channel == "webhook":
        return refusal_of_url(address, allow_private=allow_private)
    if channel != "apprise":
        return None
    plugin = apprise_plugin(address)
    if plugin is None:
        return "not an apprise URL that reaches a person"
    host = self_hosted_host(plugin)
    if host is None:
        return None
    literal = f"[{host}]" if ":" in host else host
    refusal = refusal_of_url(f"http://{literal}/", allow_private=allow_private)
    return f"{host}: {refusal}" if refusal else None


def checked_addresses(host: str, *, allow_private: bool, resolve: Resolver) -> list[str]:
    """Every address a self-hosted service's host resolves to now, each allowed by the rules;
    AddressRefused naming the first refused (or saying the name does not resolve)."""
    try:
        infos = resolve(host, 0)
    except (OSError, UnicodeError) as exc:
        raise AddressRefused(f"cannot resolve {host}: {exc}") from exc
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        refusal = refusal_of_ip(ipaddress.ip_address(address.split("%", 1)[0]),
                                allow_private=allow_private)
        if refusal:
            raise AddressRefused(f"{host} resolves to {refusal}")
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise AddressRefused(f"{host} has no address")
    return addresses
