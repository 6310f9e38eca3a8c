"""The urgent lane on PostgreSQL: an abnormal flow's first page is the flow worker's to send
(the bulk workers' passes leave it alone for HAI_PAGER_URGENT_GRACE_SECONDS, then take it, so
that a dead flow worker never loses a page), and what one urgent page costs the database."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import text

from services.alerts import paging
from services.alerts.models import MESSAGES_SENT
from shared.clock import MovableClock
from shared.events import EventType
from shared.messaging.inproc import InProcessBus
from tests.doubles import webhook
from tests.factories import T0, flow_recorded, reservoir_near_empty
from tests.helpers import Harness, deliver, emit, publish, wait_until
from tests.integration.alerts.test_alerts_api import clock
from tests.integration.alerts.test_alerts_paging_loop_pg import (  # noqa: F401 - either
    actions,
    either,
    member,
    messages_of_the_minute,
    oncall,
    paged,
    pages_of,
    put,
    sweep,
    the_alert,
    timeline,
)
from tests.integration.alerts.test_alerts_pg import pg_alerts

GRACE_SECONDS = 2.0


@pytest.fixture
def bus() -> InProcessBus:
    return InProcessBus()


@pytest.fixture
def h(tmp_path, pg_database: Callable[[str], str], bus: InProcessBus) -> Iterator[Harness]:
    """Alerts where a worker of abnormal flows runs the urgent lane (deploy/local.env's grace)."""
    with_a_lane = pg_alerts(tmp_path, pg_database("alerts"), MovableClock(T0), bus,
                            pager_urgent_grace_seconds=GRACE_SECONDS)
    yield with_a_lane
    with_a_lane.runtime.engine.dispose()


def urgent_lane(h: Harness, alert_id: str) -> dict[str, int]:
    """The flow worker's pass: the pages of the alerts its consumer just raised."""
    return paging.sweep_once(h.runtime, alert_ids=[alert_id], timed=False)


def test_a_bulk_pass_leaves_a_fresh_flow_page_to_the_urgent_lane(h: Harness, bus: InProcessBus) -> None:
    with webhook() as hook:
        put(h, "north", oncall([member("ann", "webhook", hook.url)]))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN1", 40))
        emit(h, bus, EventType.RESERVOIR_NEAR_EMPTY, reservoir_near_empty(serial="SN2"))
        flow = the_alert(h, pump_serial="SN1")["id"]
        # the bulk pass (a kick after an alerts.events commit, or the job): the burst's page only
        assert sweep(h)["sent"] == 1
        assert [p["alert"]["kind"] for p in hook.pages] == ["reservoir_near_empty"]
        assert [p["status"] for p in pages_of(h, flow)] == ["pending"]
        clock(h).advance(seconds=GRACE_SECONDS / 2)
        assert sweep(h)["claimed"] == 0  # still within the grace
        assert urgent_lane(h, flow)["sent"] == 1
    assert [p["alert"]["kind"] for p in hook.pages] == ["reservoir_near_empty", "flow_abnormal"]
    assert [(p["status"], p["attempts"]) for p in pages_of(h, flow)] == [("sent", 1)]
    assert [e["details"].get("lane") for e in timeline(h, flow) if e["action"] == "paged"] == ["urgent"]


def test_past_the_grace_any_pass_sends_a_flow_page_the_urgent_lane_did_not(
        h: Harness, bus: InProcessBus) -> None:
    """The flow worker died (or is late) after its consumer committed: the page is not lost."""
    with webhook() as hook:
        put(h, "north", oncall([member("ann", "webhook", hook.url)]))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN1", 40))
        assert sweep(h)["claimed"] == 0
        clock(h).advance(seconds=GRACE_SECONDS + 0.5)
        assert sweep(h)["sent"] == 1
    assert [p["alert"]["pump_serial"] for p in hook.pages] == ["SN1"]
    flow = the_alert(h, pump_serial="SN1")["id"]
    assert [e["details"].get("lane") for e in timeline(h, flow) if e["action"] == "paged"] == [None]


def test_one_urgent_page_is_claimed_and_recorded_in_seven_statements_and_two_commits(
        h: Harness, bus: InProcessBus) -> None:
    """Claim: one SELECT (the due page, chosen and locked by its id, with its alert and its
    on-call's signing secret), one of its recipient's messages of the minute (the storm limit's
    room, once per recipient of the pass), the UPDATE that claims it; record: one SELECT (the
    page and its alert), the timeline row, the page's UPDATE, the outbox row."""
    statements: list[str] = []
    commits: list[int] = []
    with webhook() as hook:
        put(h, "north", oncall([member("ann", "webhook", hook.url)]))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN1", 40))
        flow = the_alert(h, pump_serial="SN1")["id"]
        sa_event.listen(h.runtime.engine, "before_cursor_execute",
                        lambda _c, _cur, statement, *_: statements.append(statement))
        sa_event.listen(h.runtime.engine, "commit", lambda _conn: commits.append(1))
        assert urgent_lane(h, flow)["sent"] == 1
    assert hook.pages[0]["alert"]["pump_serial"] == "SN1"
    assert len(statements) <= 7, "\n".join(s.split("\n")[0] for s in statements)
    assert len(commits) == 2


def test_the_lane_sends_the_next_flow_page_while_the_last_one_s_result_is_written(
        h: Harness, bus: InProcessBus) -> None:
    """The urgent lane (the flow worker's targeted kick) records a pass's results on a thread of
    its own: while one page's result is slow to write (its statement held here), the next
    abnormal flow's page is claimed and sent; then both are recorded, as the lane's."""
    writing = threading.Event()
    release = threading.Event()

    def slow_record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # the record's first statement (the pass's pages, locked; the claim's skips locked rows)
        if "FOR UPDATE" in statement and "SKIP LOCKED" not in statement and not writing.is_set():
            writing.set()
            release.wait(30)

    lane = paging.PagerKick(h.runtime, targeted=True, name="test-urgent")
    lane.armed = True
    with webhook() as hook:
        put(h, "north", oncall([member("ann", "webhook", hook.url)]))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN1", 40))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN2", 40))
        first, second = (the_alert(h, pump_serial=s)["id"] for s in ("SN1", "SN2"))
        sa_event.listen(h.runtime.engine, "before_cursor_execute", slow_record)
        try:
            lane.kick([first])
            assert writing.wait(10), "the first page's result was never written"
            lane.kick([second])
            wait_until(lambda: len(hook.pages) == 2, timeout_s=10,
                       what="the second page sent while the first's result is written")
            assert [p["status"] for p in pages_of(h, first)] == ["sending"]
        finally:
            release.set()
        wait_until(lambda: [p["status"] for a in (first, second) for p in pages_of(h, a)]
                   == ["sent", "sent"], what="both results recorded")
    assert [p["alert"]["pump_serial"] for p in hook.pages] == ["SN1", "SN2"]
    for alert in (first, second):
        assert [e["details"].get("lane") for e in timeline(h, alert)
                if e["action"] == "paged"] == ["urgent"]


# ---- the flow consumer claims its pages in its own transaction ---------------------------------

def armed_lane(h: Harness) -> paging.PagerKick:
    """The flow worker's urgent lane, armed as its job arms it in a worker of abnormal flows."""
    lane = paging.pager(h.runtime).urgent
    lane.armed = True
    return lane


def test_an_abnormal_flow_s_page_leaves_with_the_consumer_s_commit(
        h: Harness, bus: InProcessBus) -> None:
    """Armed, the lane claims the page in the flow consumer's transaction: after the consumer's
    commit, the lane's threads commit once (the result), where a claim of its own made it twice
    (the claim's commit is the one that waits longest when the database is busy)."""
    lane_commits: list[str] = []

    def on_commit(_conn: Any) -> None:
        if threading.current_thread().name.startswith("alerts-pager-urgent"):
            lane_commits.append(threading.current_thread().name)

    armed_lane(h)
    with webhook() as hook:
        put(h, "north", oncall([member("ann", "webhook", hook.url)]))
        sa_event.listen(h.runtime.engine, "commit", on_commit)
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN1", 40))
        flow = the_alert(h, pump_serial="SN1")["id"]
        wait_until(lambda: [p["status"] for p in pages_of(h, flow)] == ["sent"],
                   what="the page sent and recorded")
    assert [p["alert"]["pump_serial"] for p in hook.pages] == ["SN1"]
    assert [(p["status"], p["attempts"]) for p in pages_of(h, flow)] == [("sent", 1)]
    assert [e["details"].get("lane") for e in timeline(h, flow) if e["action"] == "paged"] == ["urgent"]
    assert lane_commits == ["alerts-pager-urgent-record_0"]


@pytest.mark.parametrize("statement", ["_rooms_left", "signing_secret"])
def test_a_claim_that_fails_in_the_consumer_s_transaction_loses_neither_the_alert_nor_its_page(
        h: Harness, bus: InProcessBus, monkeypatch: pytest.MonkeyPatch, statement: str) -> None:
    """A statement of the claim fails inside the consumer's transaction, every time (on
    PostgreSQL that aborts a transaction): in its savepoint, only the claim is lost; the alert
    is raised with the consumer's commit and a kick after it claims and sends its page. (A new
    alert's claim reads its recipient's room, and the webhook's signing secret when the table
    is not loaded yet: `claim_fresh`.)"""
    real = getattr(paging, statement)
    failed: list[str] = []

    def failing_in_the_consumer(uow: Any, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is threading.main_thread():
            failed.append(threading.current_thread().name)
            uow.session.execute(text("SELECT 1 / 0"))
        return real(uow, *args, **kwargs)

    monkeypatch.setattr(paging, statement, failing_in_the_consumer)
    armed_lane(h)
    with webhook() as hook:
        put(h, "north", oncall([member("ann", "webhook", hook.url)]))
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN1", 40))
        flow = the_alert(h, pump_serial="SN1")["id"]
        wait_until(lambda: [p["status"] for p in pages_of(h, flow)] == ["sent"],
                   what="the page sent by the kick after the commit")
    assert failed == [threading.main_thread().name]  # the consumer's transaction
    assert [p["alert"]["pump_serial"] for p in hook.pages] == ["SN1"]
    assert [e["details"].get("lane") for e in timeline(h, flow) if e["action"] == "paged"] == ["urgent"]


def test_a_claim_whose_transaction_does_not_commit_sends_nothing(
        h: Harness, bus: InProcessBus) -> None:
    """The consumer's commit fails after the lane claimed the page in it: the claim goes with
    the rest, nothing is sent; the consumer's retry raises the alert and claims the page again,
    and the page goes out once, at its first attempt."""
    claimed_here: set[int] = set()
    refused: list[int] = []

    def note_claim(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # the claim's statement: its recipient's room (a new alert's pages are claimed in memory)
        if MESSAGES_SENT in statement and threading.current_thread() is threading.main_thread():
            claimed_here.add(id(conn))

    def refuse_once(conn: Any) -> None:
        if id(conn) in claimed_here:
            claimed_here.discard(id(conn))
            if not refused:
                refused.append(1)
                raise RuntimeError("the commit failed")

    armed_lane(h)
    with webhook() as hook:
        put(h, "north", oncall([member("ann", "webhook", hook.url)]))
        sa_event.listen(h.runtime.engine, "before_cursor_execute", note_claim)
        sa_event.listen(h.runtime.engine, "commit", refuse_once)
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN1", 40))
        flow = the_alert(h, pump_serial="SN1")["id"]
        wait_until(lambda: [p["status"] for p in pages_of(h, flow)] == ["sent"],
                   what="the page sent after the retry's commit")
        time.sleep(0.3)  # a page sent by the failed transaction's claim would have come by now
    assert refused == [1]
    assert [p["alert"]["pump_serial"] for p in hook.pages] == ["SN1"]
    assert [(p["status"], p["attempts"]) for p in pages_of(h, flow)] == [("sent", 1)]


def consumer_statements(h: Harness) -> list[tuple[str, Any]]:
    """Start noting every statement the consumer (the test's main thread) executes, with its
    parameters; the list it fills."""
    seen: list[tuple[str, Any]] = []

    def executed(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            seen.append((statement, parameters))

    sa_event.listen(h.runtime.engine, "before_cursor_execute", executed)
    return seen


def test_a_new_alert_s_page_is_written_claimed_by_the_insert_that_writes_it(
        h: Harness, bus: InProcessBus) -> None:
    """The page of an alert the consumer's transaction raised is claimed in memory
    (`claim_fresh`): the transaction reads its recipient's room, in a savepoint, and inserts the
    page already `sending` with its lease; no SELECT finds and locks it, no UPDATE claims it
    (both cost the flow worker ~5 ms of CPU a page, on the page's path, until 2026-12-04)."""
    armed_lane(h)
    with webhook() as hook:
        put(h, "north", oncall([member("ann", "webhook", hook.url)]))
        seen = consumer_statements(h)
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN1", 40))
        flow = the_alert(h, pump_serial="SN1")["id"]
        wait_until(lambda: [p["status"] for p in pages_of(h, flow)] == ["sent"],
                   what="the page sent and recorded")
    on_pages = [(st, params) for st, params in seen if "notifications" in st]
    assert not [st for st, _ in on_pages if st.lstrip().startswith("UPDATE")
                or "FOR UPDATE" in st], "\n\n".join(st for st, _ in on_pages)
    (insert,) = [params for st, params in on_pages if st.lstrip().startswith("INSERT")]
    row = insert if isinstance(insert, dict) else insert[0]
    assert (row["status"], row["attempts"]) == ("sending", 1) and row["claim_token"]
    assert [(p["status"], p["attempts"]) for p in pages_of(h, flow)] == [("sent", 1)]
    assert [p["alert"]["pump_serial"] for p in hook.pages] == ["SN1"]
    assert [e["details"].get("lane") for e in timeline(h, flow) if e["action"] == "paged"] == ["urgent"]


def test_a_new_critical_flow_in_a_full_minute_goes_past_the_limit_from_memory_too(
        h: Harness, bus: InProcessBus) -> None:
    armed_lane(h)
    with webhook() as ann:
        put(h, "north", oncall([member("ann", "webhook", ann.url)]))
        messages_of_the_minute(h, bus, 20)
        seen = consumer_statements(h)
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN-FLOW", 40))
        flow = the_alert(h, pump_serial="SN-FLOW")["id"]
        wait_until(lambda: [p["status"] for p in pages_of(h, flow)] == ["sent"],
                   what="the page sent past the limit")
    assert not [st for st, _ in seen if "notifications" in st and "FOR UPDATE" in st]
    assert len(ann.pages) == 21 and ann.pages[-1]["alert"]["pump_serial"] == "SN-FLOW"
    assert [(p["status"], p["attempts"]) for p in pages_of(h, flow)] == [("sent", 1)]
    details = paged(h, flow)
    assert (details["lane"], details["past_storm_limit"]) == ("urgent", True)


def test_a_new_warning_in_a_full_minute_is_held_as_a_pass_holds_it(
        h: Harness, bus: InProcessBus) -> None:
    """A warning of a flow (not critical) whose recipient's minute is full: the claim from memory
    leaves it to `claim_in`, which holds it with the recipient's due pages; it goes when the
    minute frees one, once."""
    armed_lane(h)
    with webhook() as ann:
        put(h, "north", oncall([member("ann", "webhook", ann.url)]))
        messages_of_the_minute(h, bus, 20)
        emit(h, bus, EventType.FLOW_RECORDED, flow_recorded("SN-WARN", 20))
        warning = the_alert(h, pump_serial="SN-WARN")
        assert warning["severity"] == "warning"
        assert [p["status"] for p in pages_of(h, warning["id"])] == ["pending"]
        assert actions(h, warning["id"]).count("page_held") == 1
        assert len(ann.pages) == 20
        clock(h).advance(seconds=60)
        assert sweep(h)["sent"] == 1
    assert ann.pages[-1]["alert"]["pump_serial"] == "SN-WARN"
    assert [(p["status"], p["attempts"]) for p in pages_of(h, warning["id"])] == [("sent", 1)]


def test_new_flows_outnumbering_the_room_go_as_one_message_the_critical_first(
        either: Harness, bus: InProcessBus) -> None:  # noqa: F811
    """Room for one more message and a batch of the flow consumer raising a warning and a
    critical flow: one message from memory, the critical one its page, the warning listed (on
    PostgreSQL and on SQLite, the embedded default, whose savepoint the room's read takes too)."""
    h = either
    armed_lane(h)
    with webhook() as ann:
        put(h, "north", oncall([member("ann", "webhook", ann.url)]))
        messages_of_the_minute(h, bus, 19)
        bus.declare(h.runtime.all_queues())
        for serial, deviation in (("SN-WARN", 20), ("SN-CRIT", 40)):
            publish(bus, EventType.FLOW_RECORDED, flow_recorded(serial, deviation),
                    time=h.runtime.clock.now())
        assert all(o.action == "ack" for o in deliver([h], bus))
        ids = {s: the_alert(h, pump_serial=s)["id"] for s in ("SN-WARN", "SN-CRIT")}
        wait_until(lambda: [p["status"] for s in ids.values() for p in pages_of(h, s)]
                   == ["sent", "sent"], what="both pages sent in one message")
    page = ann.pages[-1]
    assert len(ann.pages) == 20
    assert [a["pump_serial"] for a in page["alerts"]] == ["SN-CRIT", "SN-WARN"]
    assert page["alert"]["pump_serial"] == "SN-CRIT"
    assert "past_storm_limit" not in paged(h, ids["SN-CRIT"])
