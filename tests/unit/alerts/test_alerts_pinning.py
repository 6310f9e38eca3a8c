"""A name's resolution pinned for one send: every spelling of the name, in the pinning thread
only, for the block only."""

from __future__ import annotations

import socket
import threading

import pytest

from services.alerts.pinning import pinned

PINNED = "127.0.0.9"


def addresses(host: str | bytes, family: int = 0) -> set[str]:
    return {str(info[4][0]) for info in socket.getaddrinfo(host, 443, family, socket.SOCK_STREAM)}


def test_every_spelling_of_the_name_resolves_to_the_pinned_addresses_only() -> None:
    with pinned("Straße.Pager.TEST.", [PINNED]):
        for spelling in ("straße.pager.test", "STRASSE.pager.test.", "xn--strae-oqa.pager.test",
                         b"XN--STRAE-OQA.pager.test"):
            assert addresses(spelling) == {PINNED}, spelling
        with pytest.raises(socket.gaierror):  # no checked address of the family asked
            addresses("straße.pager.test", socket.AF_INET6)


def test_the_pin_holds_in_its_thread_and_for_its_block_only() -> None:
    elsewhere: list[set[str]] = []
    with pinned("localhost", [PINNED]):
        assert addresses("localhost") == {PINNED}
        thread = threading.Thread(target=lambda: elsewhere.append(addresses("localhost")))
        thread.start()
        thread.join()
    assert PINNED not in elsewhere[0] and PINNED not in addresses("localhost")
