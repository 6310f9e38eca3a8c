"""The commit rule (shared/db.py, UnitOfWork): a request's transaction commits after its answer is
built and before it is sent, so a commit that fails is answered as the failure it is (409 for a
unique key written first or a serialization failure), never with the 2xx the route meant, and
nothing of the request stays. PostgreSQL checks a deferred constraint trigger at COMMIT: the
database itself refuses the commit, after every statement of the request succeeded."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from shared.dberrors import SERIALIZATION_FAILURE, UNIQUE_VIOLATION
from shared.events import EventType
from tests.helpers import Harness
from tests.integration.alerts.alerts_testkit import NURSE
from tests.security.race_kit import alerts_with_a_firing_alert


@contextmanager
def commit_refused(h: Harness, sqlstate: str) -> Iterator[None]:
    """Every commit that wrote an audit row fails with `sqlstate` while the block runs."""
    with h.runtime.engine.begin() as conn:
        conn.execute(text(
            "CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'refused at commit' USING ERRCODE = TG_ARGV[0]; END $$"))
        conn.execute(text(
            "CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON audit_log "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            f"EXECUTE FUNCTION refuse_commit('{sqlstate}')"))
    try:
        yield
    finally:
        with h.runtime.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER refuse_commit ON audit_log"))
            conn.execute(text("DROP FUNCTION refuse_commit()"))


def _count(h: Harness, sql: str, **params: str) -> int:
    with h.runtime.engine.connect() as conn:
        return int(conn.scalar(text(sql), params) or 0)


@pytest.mark.parametrize(("sqlstate", "detail"), [
    (SERIALIZATION_FAILURE, "locked by another request"),
    (UNIQUE_VIOLATION, "a concurrent request wrote the same key"),
])
def test_a_failed_commit_is_the_answer_and_leaves_nothing(
        tmp_path: Path, pg_database: Callable[[str], str], sqlstate: str, detail: str) -> None:
    h, alert_id = alerts_with_a_firing_alert(tmp_path, pg_database("alerts"))
    acks = "SELECT count(*) FROM outbox WHERE routing_key = :t"
    with commit_refused(h, sqlstate):
        ack = h.client.post(f"/v1/alerts/{alert_id}/ack", headers=NURSE, json={})
        read = h.client.get(f"/v1/alerts/{alert_id}", headers=NURSE)  # its read audit row
    assert ack.status_code == 409, ack.text
    assert detail in ack.json()["detail"]
    assert read.status_code == 409, read.text
    assert h.client.get(f"/v1/alerts/{alert_id}", headers=NURSE).json()["status"] == "firing"
    assert _count(h, acks, t=EventType.ALERT_ACKNOWLEDGED) == 0
    assert _count(h, "SELECT count(*) FROM audit_log WHERE action = 'alert.acknowledged'") == 0
    again = h.client.post(f"/v1/alerts/{alert_id}/ack", headers=NURSE, json={})
    assert again.status_code == 200 and again.json()["status"] == "acknowledged", again.text
    # the change, its audit row and its event committed together
    assert _count(h, acks, t=EventType.ALERT_ACKNOWLEDGED) == 1
    assert _count(h, "SELECT count(*) FROM audit_log WHERE action = 'alert.acknowledged'") == 1
