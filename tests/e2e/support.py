"""Polling for the end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.helpers import wait_until


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30, every: float = 0.2) -> Any:
    """Poll until `probe()` is truthy; fail with `what` after `timeout` seconds."""
    last: list[Any] = [None]

    def attempt() -> Any:
        try:
            last[0] = probe()
        except Exception as exc:  # noqa: BLE001 - keep polling; report the last error
            last[0] = exc
            return None
        return last[0]

    try:
        return wait_until(attempt, what=what, timeout_s=timeout, interval_s=every)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last: {last[0]!r}") from None
