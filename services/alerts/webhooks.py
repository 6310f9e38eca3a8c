"""Webhook pages: where they may go, and how they are signed (Standard Webhooks, CONTRACT: Alerts).

A page carries an MRN and a pump serial, so it is signed with the on-call table's secret (the
receiver checks `webhook-signature`), and it only goes where a clinician's pager can be: never to
a link-local or cloud-metadata address, and in production not to loopback or private ranges
unless HAI_WEBHOOK_ALLOW_PRIVATE says so. The address is checked when the on-call table is set
(by its literal host) and again when a page is sent (every address the name resolves to then;
the page goes to the address checked, so a name re-pointed in between gains nothing)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import secrets
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import httpx
from standardwebhooks import Webhook

from services.alerts.settings import AlertsSettings

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
SECRET_MIN_BYTES, SECRET_MAX_BYTES = 24, 64
# names of cloud metadata services (their addresses are link-local, or listed below)
METADATA_HOSTS = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data",
    "instance-data.ec2.internal", "metadata.azure.internal", "metadata.tencentyun.com",
    "metadata.platformequinix.com",
})
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192", "169.254.170.2"))
PRODUCTION_ONLY = " (refused in production unless HAI_WEBHOOK_ALLOW_PRIVATE is set)"
NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# getaddrinfo's shape: (family, type, proto, canonname, sockaddr)
Resolver = Callable[[str, int], Sequence[tuple[Any, ...]]]


class AddressRefused(Exception):
    """A webhook address this system will not send to; the message says why."""


def private_allowed(settings: AlertsSettings) -> bool:
    """Loopback and private ranges are fine outside production, and in it only when set."""
    return settings.env != "production" or settings.webhook_allow_private


def _embedded_ipv4(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped or NAT64), else the address itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def refusal_of_ip(ip: IPAddress, *, allow_private: bool) -> str | None:
    """Why a page may not go to this address, or None when it may."""
    ip = _embedded_ipv4(ip)
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if ip.is_link_local:
        return f"{ip} is link-local"
    if ip.is_multicast:
        return f"{ip} is not a unicast address"
    if ip.is_loopback or ip.is_unspecified:
        return None if allow_private else f"{ip} is a loopback address{PRODUCTION_ONLY}"
    if ip.is_reserved:
        return f"{ip} is a reserved address"
    if not ip.is_global:
        return None if allow_private else f"{ip} is a private address{PRODUCTION_ONLY}"
    return None


def _numeric_host(host: str) -> IPAddress | None:
    """The address a host names literally, in any form the C resolver reads (e.g. `2852039166`)."""
    try:
        infos = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return ipaddress.ip_address(str(infos[0][4][0]).split("%", 1)[0])


def refusal_of_url(url: str, *, allow_private: bool) -> str | None:
    """Why a webhook URL is refused, judged without a DNS lookup; None when it may be stored."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "not a valid URL"
    if parsed.scheme not in ("http", "https"):
        return "a webhook address must be an http(s) URL"
    host = unquote(parsed.host).rstrip(".").lower()
    if not host:
        return "the URL has no host"
    if host in METADATA_HOSTS:
        return f"{host} is a cloud metadata service"
    ip = _numeric_host(host.split("%", 1)[0])  # an IPv6 zone (`fe80::1%eth0`) names no other host
    if ip is not None:
        return refusal_of_ip(ip, allow_private=allow_private)
    if ":" in host or "%" in host:
        return f"{host} is not a valid address"
    if not allow_private and (host == "localhost" or host.endswith(".localhost")):
        return f"{host} is a loopback name{PRODUCTION_ONLY}"
    return None


@dataclass(frozen=True)
class Target:
    """Where a page is actually sent: the URL on a checked address, and the name it was for."""

    url: httpx.URL
    host_header: str
    tls_server_name: str | None


def resolve_target(url: str, *, allow_private: bool, resolve: Resolver) -> Target:
    """Resolve the URL's host, check every address it has, and aim at the first one."""
    refusal = refusal_of_url(url, allow_private=allow_private)
    if refusal:
        raise AddressRefused(refusal)
    parsed = httpx.URL(url)
    host = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = resolve(parsed.raw_host.decode("ascii"), port)
    except (OSError, UnicodeError) as exc:
        raise AddressRefused(f"cannot resolve {host}: {exc}") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise AddressRefused(f"{host} has no address")
    for address in addresses:
        refusal = refusal_of_ip(address, allow_private=allow_private)
        if refusal:
            raise AddressRefused(f"{host} resolves to {refusal}")
    return Target(url=parsed.copy_with(host=str(addresses[0])),
                  host_header=parsed.netloc.decode("ascii"),
                  tls_server_name=host if parsed.scheme == "https" else None)


def system_resolver(host: str, port: int) -> Sequence[tuple[Any, ...]]:
    """The operating system's resolver, for TCP."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


# ---- signing -------------------------------------------------------------------------------

def new_secret() -> str:
    """A fresh signing secret, `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_problem(secret: str) -> str | None:
    """Why a signing secret given by a caller is unusable, or None."""
    if not secret.startswith(SECRET_PREFIX):
        return f"must start with {SECRET_PREFIX}"
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        return f"must be {SECRET_PREFIX} followed by base64"
    if not SECRET_MIN_BYTES <= len(raw) <= SECRET_MAX_BYTES:
        return f"must carry {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} bytes of key"
    return None


def signature_headers(secret: str, *, message_id: str, body: bytes, at: datetime) -> dict[str, str]:
    """`webhook-id`, `webhook-timestamp` and `webhook-signature` (v1, HMAC-SHA256) of one body."""
    at = at.astimezone(UTC).replace(microsecond=0)
    signature = Webhook(secret).sign(message_id, at, body.decode("utf-8"))
    return {"webhook-id": message_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signature}
