"""A name's resolution pinned for one send (against DNS rebinding).

Apprise resolves the host of a URL itself when it sends (requests through urllib3, smtplib for
e-mail: both call `socket.getaddrinfo`), after our address check resolved it once. A name that
answers an allowed address to the check and an internal one to the send would slip through. So
while a page goes out, in that thread, the name checked resolves to the addresses the check
approved and to no other: `socket.getaddrinfo` is wrapped (once; again if someone replaced it)
by a function that answers pinned names from the pins of the calling thread and passes every
other lookup, and every other thread, through unchanged. Only the lookup is pinned: the library
still connects by the name, so TLS sends it (SNI) and verifies the certificate against it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import idna

_pins = threading.local()
_install_lock = threading.Lock()
_MARK = "_hai_pinned_resolution"


def _key(host: Any) -> str | None:
    """The form a name is compared in: text, lower case, no root dot, no IPv6 brackets."""
    if isinstance(host, bytes | bytearray):
        try:
            host = bytes(host).decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(host, str):
        return None
    return host.strip("[]").rstrip(".").lower()


def _spellings(host: str) -> set[str]:
    """Every form a library may hand the resolver for `host` (as given, and its IDNA A-labels
    as Python's codec and as requests' `idna` package write them)."""
    names = {_key(host) or host}
    for encode in (lambda h: h.encode("idna").decode("ascii"),
                   lambda h: idna.encode(h, uts46=True).decode("ascii")):
        with contextlib.suppress(UnicodeError, ValueError, idna.IDNAError):
            names.add(_key(encode(host)) or host)
    return names


def _pinned(host: Any) -> tuple[str, ...] | None:
    pins: dict[str, tuple[str, ...]] | None = getattr(_pins, "names", None)
    if not pins:
        return None
    key = _key(host)
    return pins.get(key) if key is not None else None


def _wrapping(resolve: Callable[..., Any]) -> Callable[..., Any]:
    def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0,  # noqa: A002 - socket's names
                    proto: int = 0, flags: int = 0) -> Any:
        addresses = _pinned(host)
        if addresses is None:
            return resolve(host, port, family, type, proto, flags)
        infos: list[Any] = []
        for address in addresses:  # numeric: answered without any lookup
            with contextlib.suppress(socket.gaierror):  # not of the family asked
                infos.extend(resolve(address, port, family, type, proto,
                                     flags | socket.AI_NUMERICHOST))
        if not infos:
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: no checked address to connect to")
        return infos

    setattr(getaddrinfo, _MARK, True)
    return getaddrinfo


def _install() -> None:
    """Wrap `socket.getaddrinfo` unless it is wrapped already (the wrapper calls whatever it
    replaced, so a resolver installed by someone else keeps answering the other names)."""
    with _install_lock:
        if not getattr(socket.getaddrinfo, _MARK, False):
            socket.getaddrinfo = _wrapping(socket.getaddrinfo)


@contextlib.contextmanager
def pinned(host: str, addresses: Sequence[str]) -> Iterator[None]:
    """Within the block, in this thread, `host` resolves to `addresses` only (none: it does not
    resolve)."""
    _install()
    before: dict[str, tuple[str, ...]] | None = getattr(_pins, "names", None)
    _pins.names = {**(before or {}), **dict.fromkeys(_spellings(host), tuple(addresses))}
    try:
        yield
    finally:
        _pins.names = before
