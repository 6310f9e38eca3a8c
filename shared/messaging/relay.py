"""The outbox relay: publishes committed events in batches with confirms, then marks them sent."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from sqlalchemy import select, update

from shared.db import UnitOfWorkFactory, is_postgres
from shared.messaging.base import OutgoingMessage, Publisher

log = structlog.get_logger(__name__)


class OutboxRelay:
    """Moves outbox rows to the broker; several relays may run at once (rows are claimed)."""

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        publisher_factory: Callable[[], Publisher],
        *,
        batch_size: int = 500,
        poll_seconds: float = 0.5,
        on_published: Callable[[int], None] | None = None,
    ) -> None:
        self.uow_factory = uow_factory
        self.publisher_factory = publisher_factory
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self._publisher: Publisher | None = None
        self._on_published = on_published
        self.last_run_at: float | None = None

    def run_once(self) -> int:
        """Publish one batch of unsent events; returns how many were published."""
        outbox = self.uow_factory.platform.outbox
        with self.uow_factory() as uow:
            stmt = (
                select(outbox.c.seq, outbox.c.event_id, outbox.c.exchange, outbox.c.routing_key,
                       outbox.c.body)
                .where(outbox.c.published_at.is_(None))
                .order_by(outbox.c.seq)
                .limit(self.batch_size)
            )
            if is_postgres(uow.session):
                stmt = stmt.with_for_update(skip_locked=True)
            rows = uow.session.execute(stmt).all()
            self.last_run_at = time.monotonic()
            if not rows:
                return 0
            messages = [
                OutgoingMessage(message_id=r.event_id, exchange=r.exchange,
                                routing_key=r.routing_key, body=r.body.encode())
                for r in rows
            ]
            self._publish(messages)
            self.mark_published(uow, [r.seq for r in rows])
            uow.commit()
        if self._on_published is not None:
            self._on_published(len(rows))
        return len(rows)

    def _publish(self, messages: Sequence[OutgoingMessage]) -> None:
        if self._publisher is None:
            self._publisher = self.publisher_factory()
        try:
            self._publisher.publish_batch(messages)
        except Exception:
            self._drop_publisher()
            raise

    def mark_published(self, uow: Any, seqs: list[int]) -> None:
        """Mark the rows sent, in one statement."""
        outbox = self.uow_factory.platform.outbox
        uow.session.execute(
            update(outbox).where(outbox.c.seq.in_(seqs)).values(published_at=uow.now())
        )

    def _drop_publisher(self) -> None:
        if self._publisher is not None:
            try:
                self._publisher.close()
            except Exception:  # noqa: BLE001 - the connection is already broken
                pass
            self._publisher = None

    def run(self, stop: threading.Event) -> None:
        """Relay until stopped: at once after a local commit, else every poll interval."""
        signal = self.uow_factory.outbox_signal
        backoff = 0.5
        while not stop.is_set():
            try:
                signal.clear()
                published = self.run_once()
                backoff = 0.5
            except Exception as exc:  # noqa: BLE001 - the relay must outlive broker and DB outages
                log.warning("outbox.relay_failed", error=f"{type(exc).__name__}: {exc}",
                            retry_in_s=backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if published >= self.batch_size:
                continue
            signal.wait(self.poll_seconds)
        self._drop_publisher()
