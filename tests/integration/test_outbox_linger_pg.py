"""A relay that lingers batches the commits of a moment, on PostgreSQL: woken by the first of
three commits (the other two 0.3 s later), it waits `linger_seconds` (1 s) before it claims, and
sends the three in one batch (one claim, one publish and its confirms, one mark, one commit),
each once and in order. The urgent lane never lingers (shared.runtime.Worker gives the setting
only to a relay that sends no urgent event: tests/unit/platform/test_runtime_parts.py and
tests/integration/test_outbox_urgent_lane.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import func, select

from shared.db import make_engine
from shared.messaging.base import OutgoingMessage
from shared.messaging.relay import OutboxRelay
from tests.helpers import wait_until
from tests.unit.platform.toyservice import toy_runtime

LATER_S = 0.3  # how long after the first commit the other two come (the linger: 1 s)


class _Recording:
    """A publisher that confirms at once and keeps each batch it was given."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def publish_batch(self, messages: Sequence[OutgoingMessage], timeout: float = 30.0) -> None:
        self.batches.append([m.message_id for m in messages])

    def publish_batch_async(self, messages: Sequence[OutgoingMessage],
                            timeout: float = 30.0) -> Callable[[], None]:
        self.publish_batch(messages, timeout)
        return lambda: None

    def close(self) -> None:
        pass


def _three_commits_in_a_moment(pg_url: str, tmp_path: Any, linger_s: float) -> list[list[str]]:
    engine = make_engine(pg_url)
    try:
        rt = toy_runtime(tmp_path, engine=engine)
        publisher = _Recording()
        relay = OutboxRelay(rt.uow_factory, lambda: publisher, poll_seconds=30.0,
                            linger_seconds=linger_s)
        stop = threading.Event()
        thread = threading.Thread(target=relay.run, args=(stop,), name="relay")
        thread.start()
        try:
            wait_until(lambda: relay.last_run_at is not None, what="the relay's first pass")
            ids = []
            for n in range(3):  # each commit wakes the relay (the factory's outbox signal)
                with rt.uow_factory() as uow:
                    ids.append(uow.publish_raw("toy.widget.created", {"n": n}).id)
                    uow.commit()
                if n == 0:  # time enough for a relay that does not linger to send it alone
                    time.sleep(LATER_S)
            wait_until(lambda: sum(len(b) for b in publisher.batches) == 3,
                       what="the three events published")
        finally:
            stop.set()
            rt.uow_factory.outbox_signal.set()
            thread.join(10)
        with rt.uow_factory() as uow:
            outbox = rt.uow_factory.platform.outbox
            assert uow.session.execute(select(func.count()).select_from(outbox).where(
                outbox.c.published_at.is_(None))).scalar_one() == 0
        assert [i for b in publisher.batches for i in b] == ids  # each once, in order
        return publisher.batches
    finally:
        engine.dispose()


def test_a_lingering_relay_sends_the_commits_of_a_moment_in_one_batch(pg_database, tmp_path):
    batches = _three_commits_in_a_moment(pg_database("linger"), tmp_path, linger_s=1.0)
    assert [len(b) for b in batches] == [3]
