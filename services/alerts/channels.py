"""How a page reaches a person: webhook (HTTP POST of JSON), email (SMTP), or the log."""

from __future__ import annotations

import json
import smtplib
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx
import structlog

from services.alerts.settings import AlertsSettings
from services.alerts.webhooks import (
    AddressRefused,
    Resolver,
    private_allowed,
    resolve_target,
    signature_headers,
    system_resolver,
)
from shared import tracing

log = structlog.get_logger(__name__)


class SendError(Exception):
    """The page did not reach its recipient (it will be retried or escalated)."""


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

    def body(self) -> dict[str, Any]:
        """The webhook body of the contract: {alert, level, recipient, ack_url} (+ notification_id)."""
        return {"alert": self.alert, "level": self.level, "recipient": self.recipient,
                "ack_url": self.ack_url, "notification_id": self.notification_id}


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

    def send(self, page: PageMessage) -> None:
        """Send a page; raise SendError when it did not get through."""
        if page.channel == "webhook":
            self._webhook(page)
        elif page.channel == "email":
            self._email(page)
        elif page.channel == "log":
            # ids only in logs: the MRN stays out
            log.warning("page.log", notification_id=page.notification_id,
                        alert_id=page.alert.get("id"), kind=page.alert.get("kind"),
                        severity=page.alert.get("severity"), level=page.level,
                        recipient_id=page.recipient, ack_url=page.ack_url)
        else:
            raise SendError(f"unknown channel {page.channel!r}")

    def _webhook(self, page: PageMessage) -> None:
        if not page.webhook_secret:
            raise SendError("webhook: the on-call table has no signing secret; set one (PUT)")
        try:
            target = resolve_target(page.address, allow_private=private_allowed(self.settings),
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

    def _email(self, page: PageMessage) -> None:
        a = page.alert
        msg = EmailMessage()
        msg["From"] = self.settings.smtp_from
        msg["To"] = page.address
        msg["Subject"] = f"[HAI {a.get('severity')}] {a.get('summary')}"
        msg["X-HAI-Notification-Id"] = page.notification_id
        msg.set_content("\n".join([
            f"{str(a.get('severity')).upper()} alert ({a.get('kind')}), on-call level {page.level}",
            "",
            f"{a.get('summary')}",
            "",
            f"MRN:    {a.get('patient_mrn') or '-'}",
            f"Pump:   {a.get('pump_serial') or '-'}",
            f"Center: {a.get('center') or '-'}",
            "",
            f"Acknowledge: {page.ack_url}",
        ]))
        try:
            with smtplib.SMTP(self.settings.smtp_host, self.settings.smtp_port,
                              timeout=self.settings.page_timeout_seconds) as smtp:
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            raise SendError(f"email: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self.http.close()
        with self._tls_lock:
            for client in self._tls.values():
                client.close()
