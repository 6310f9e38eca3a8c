"""Issue 16, item 9: contention answers at once. Fifty acknowledgements of one alert: one wins,
the others 409, none stalls for the pool; a row held by another transaction is a 409 "locked"
after the request's lock timeout; a pool with no free connection a 503 with Retry-After."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from httpx import Response
from sqlalchemy import text

from shared.events import EventType
from tests.doubles import running_server
from tests.helpers import Harness, wait_until
from tests.integration.alerts.alerts_testkit import NURSE
from tests.security.race_kit import N, alerts_with_a_firing_alert, at_once, statuses


def _count(h: Harness, sql: str, **params: Any) -> int:
    with h.runtime.engine.connect() as conn:
        return int(conn.scalar(text(sql), params) or 0)


def test_fifty_acknowledgements_of_one_alert_one_wins_the_others_409(
        tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    """Ten connections for fifty requests: the rollbacks that give connections back run on
    threads of their own (shared/web.py); queued for threads held by requests waiting for a
    connection, all would stall until the pool's timeout (then 500). The pool wait allowed here
    is far above any honest queue."""
    h, alert_id = alerts_with_a_firing_alert(tmp_path, pg_database("alerts"), db_pool_timeout_seconds=10)
    with running_server(h.client.app) as url:
        answers = at_once(url, "POST", f"/v1/alerts/{alert_id}/ack", headers=NURSE, body={})
    assert statuses(answers) == {200: 1, 409: N - 1}, [r.text for r in answers if r.status_code != 409]
    for r in answers:
        if r.status_code == 409:  # the current state, or that the row is being written
            detail = r.json()["detail"]
            assert "acknowledged" in detail or "locked by another request" in detail, detail
    assert _count(h, "SELECT count(*) FROM alert_events WHERE action = 'acknowledged'") == 1
    assert _count(h, "SELECT count(*) FROM outbox WHERE routing_key = :t",
                  t=EventType.ALERT_ACKNOWLEDGED) == 1


def test_a_row_locked_by_another_transaction_answers_409_locked(
        tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    h, alert_id = alerts_with_a_firing_alert(tmp_path, pg_database("alerts"))
    answers: list[Response] = []

    def acknowledge() -> None:
        answers.append(h.client.post(f"/v1/alerts/{alert_id}/ack", headers=NURSE, json={}))

    with h.runtime.engine.connect() as holder:
        holder.execute(text("SELECT id FROM alerts WHERE id = :id FOR UPDATE"), {"id": alert_id})
        request = threading.Thread(target=acknowledge)
        request.start()
        try:
            # the request gives up at its lock timeout (HAI_DB_LOCK_TIMEOUT_MS), while the lock
            # is still held: it must not wait as long as the lock stays
            wait_until(lambda: answers, what="an answer while the row is locked", timeout_s=10)
        finally:
            holder.rollback()
            request.join()
    [locked] = answers
    assert locked.status_code == 409, locked.text
    assert locked.headers["content-type"].startswith("application/problem+json")
    assert "locked by another request; try again" in locked.json()["detail"]
    assert locked.headers["retry-after"] == "1"
    again = h.client.post(f"/v1/alerts/{alert_id}/ack", headers=NURSE, json={})
    assert again.status_code == 200 and again.json()["status"] == "acknowledged", again.text


def test_an_exhausted_pool_answers_503_with_retry_after(
        tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    """Every connection of the pool is held: a request gives up after the (short, default)
    checkout timeout with a 503, not after 30 s with a 500."""
    h, _ = alerts_with_a_firing_alert(tmp_path, pg_database("alerts"), pool_size=2, max_overflow=0)
    held = [h.runtime.engine.connect() for _ in range(2)]
    try:
        r = h.client.get("/v1/alerts", headers=NURSE)
    finally:
        for conn in held:
            conn.close()
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["retry-after"] == "1"
    assert "every database connection is busy" in r.json()["detail"]
    assert h.client.get("/v1/alerts", headers=NURSE).status_code == 200
