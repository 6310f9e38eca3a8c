"""`asyncio.run` in a test fails when a browser test ran before it in the same process
(Playwright's sync API leaves a running loop in the main thread): tests use
`tests.helpers.run_async`, which runs the coroutine on a loop of its own thread."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[2]


def test_no_test_calls_asyncio_run_itself() -> None:
    offenders = sorted(str(p.relative_to(TESTS)) for p in TESTS.rglob("*.py")
                       if p.name != "helpers.py" and p != Path(__file__).resolve()
                       and "asyncio.run(" in p.read_text(encoding="utf-8"))
    assert not offenders, f"use tests.helpers.run_async instead of asyncio.run in {offenders}"
