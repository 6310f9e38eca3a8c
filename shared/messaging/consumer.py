"""Transport-agnostic event handling: parse, inbox de-duplication, one transaction per batch."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel, ValidationError
from sqlalchemy import Executable, String, bindparam, cast, func, insert, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from shared import tracing
from shared.contracts import registry
from shared.db import UnitOfWork, UnitOfWorkFactory, UTCDateTime, is_postgres
from shared.events import CloudEvent
from shared.logging import safe_error
from shared.messaging.base import Delivery, Outcome, QueueSpec

log = structlog.get_logger(__name__)

P = TypeVar("P", bound=BaseModel)
Handler = Callable[[UnitOfWork, CloudEvent], None]
BatchHandler = Callable[[UnitOfWork, Sequence[CloudEvent]], None]
# called with a transaction's events before any is handled: to read at once what their handlers
# would each look up
Prepare = Callable[[UnitOfWork, Sequence[CloudEvent]], None]

# the database is away (down, restarting, a failover): no message is at fault, so the batch
# goes back to the queue whole and no attempt is counted against any message
INFRASTRUCTURE_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)


class PermanentError(Exception):
    """A message that can never succeed (unknown id, impossible data): dead-letter it, no retry."""


def parse_event(delivery: Delivery) -> CloudEvent:
    """Parse a delivery's body as a structured-mode CloudEvent or raise PermanentError saying why."""
    try:
        return CloudEvent.model_validate_json(delivery.body)  # one pass, for the common case
    except ValidationError:
        pass  # parsed again below, step by step, to say precisely what is wrong
    try:
        raw = json.loads(delivery.body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PermanentError(f"malformed: body is not JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise PermanentError("malformed: body is not a JSON object")
    try:
        return CloudEvent.model_validate(raw)
    except ValidationError as exc:
        raise PermanentError(f"malformed: not a CloudEvents 1.0 event ({_short(exc)})") from exc


def _short(exc: Exception, limit: int = 600) -> str:
    return safe_error(exc, limit).partition(": ")[2]


class EventConsumer:
    """Handles deliveries of one queue: each event once, after its transaction commits."""

    def __init__(
        self,
        name: str,
        queue: QueueSpec,
        handlers: Mapping[str, Handler],
        uow_factory: UnitOfWorkFactory,
        *,
        max_attempts: int = 5,
        on_outcome: Callable[[str, Outcome], None] | None = None,
        batch_handlers: Mapping[str, BatchHandler] | None = None,
        prepare: Prepare | None = None,
    ) -> None:
        self.name = name
        self.queue = queue
        self.handlers = dict(handlers)
        # a batch handler takes a run of consecutive events of its type in one call
        self.batch_handlers = dict(batch_handlers or {})
        self.prepare = prepare
        self.uow_factory = uow_factory
        self.max_attempts = max_attempts
        self._on_outcome = on_outcome
        self._claim_pg = _pg_claim_statement(uow_factory.platform.inbox)

    def process(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        """Handle a batch: one transaction for all, or one per message when any of them fails."""
        outcomes: list[Outcome | None] = [None] * len(deliveries)
        parsed: list[tuple[int, CloudEvent]] = []
        for i, delivery in enumerate(deliveries):
            try:
                event = parse_event(delivery)
            except PermanentError as exc:
                outcomes[i] = Outcome.dead_letter(str(exc))
                continue
            if event.type not in self.handlers and event.type not in self.batch_handlers:
                outcomes[i] = Outcome.dead_letter(f"unknown event type {event.type!r}")
                continue
            parsed.append((i, event))
        if parsed:
            try:
                self._handle_batch([e for _, e in parsed])
                for i, _ in parsed:
                    outcomes[i] = Outcome.ack()
            except INFRASTRUCTURE_ERRORS:
                raise  # the transport puts the batch back; nothing is counted
            except Exception:  # noqa: BLE001 - fall back to one at a time to isolate the culprit
                if len(parsed) == 1:
                    i, event = parsed[0]
                    outcomes[i] = self._handle_one(event, deliveries[i])
                else:
                    for i, event in parsed:
                        outcomes[i] = self._handle_one(event, deliveries[i])
        result = [o if o is not None else Outcome.ack() for o in outcomes]
        if self._on_outcome is not None:
            for outcome in result:
                self._on_outcome(self.name, outcome)
        return result

    def _handle_batch(self, events: Sequence[CloudEvent]) -> None:
        with self.uow_factory() as uow:
            self._handle_events(uow, self._claim(uow, events))
            uow.commit()

    def _handle_one(self, event: CloudEvent, delivery: Delivery) -> Outcome:
        try:
            with self.uow_factory() as uow:
                fresh = self._claim(uow, [event])
                if not fresh:
                    return Outcome.ack()  # handled before: a redelivery
                self._handle_events(uow, fresh)
                uow.commit()
            return Outcome.ack()
        except INFRASTRUCTURE_ERRORS:
            raise
        except PermanentError as exc:
            reason = f"rejected: {exc}"
        except ValidationError as exc:
            reason = f"invalid data for {event.type}: {_short(exc)}"
        except IntegrityError as exc:
            # most often a concurrent consumer handling the same event: a retry will see it done
            return self._retry_or_dead_letter(delivery, event, f"integrity: {_short(exc)}")
        except Exception as exc:  # noqa: BLE001 - any other failure is retried a bounded number of times
            return self._retry_or_dead_letter(delivery, event, f"{type(exc).__name__}: {_short(exc)}")
        log.warning("event.dead_lettered", consumer=self.name, event_id=event.id,
                    event_type=event.type, reason=reason)
        return Outcome.dead_letter(reason)

    def _retry_or_dead_letter(self, delivery: Delivery, event: CloudEvent, reason: str) -> Outcome:
        attempts = delivery.attempts + 1
        if attempts >= self.max_attempts:
            log.error("event.failed_permanently", consumer=self.name, event_id=event.id,
                      event_type=event.type, attempts=attempts, reason=reason)
            return Outcome.dead_letter(f"failed {attempts} times; last error: {reason}")
        log.warning("event.retry", consumer=self.name, event_id=event.id, event_type=event.type,
                    attempts=attempts, reason=reason)
        return Outcome.retry(reason)

    def _claim(self, uow: UnitOfWork, events: Sequence[CloudEvent]) -> list[CloudEvent]:
        """Write the events' inbox rows; return those not handled before, in order, each once.

        On PostgreSQL this is one statement (`INSERT … ON CONFLICT DO NOTHING RETURNING`): an
        event another consumer is handling right now waits for that transaction, and counts as
        handled if it commits. Elsewhere: look the ids up, then insert the new ones."""
        if not events:
            return []
        now = uow.now()
        if is_postgres(uow.session):
            # one JSON text parameter: psycopg dumps a text array element by element in Python
            # (a regular expression for each), a fifth of the consumer's database time
            pairs = json.dumps([(e.id, e.type) for e in events])
            claimed = set(uow.session.scalars(self._claim_pg, {
                "consumer": self.name, "events": pairs, "now": now}).all())
        else:
            inbox = uow.platform.inbox
            seen = set(uow.session.scalars(select(inbox.c.event_id).where(
                inbox.c.consumer == self.name, inbox.c.event_id.in_([e.id for e in events]))))
            claimed = {e.id for e in events} - seen
            if claimed:
                uow.session.execute(insert(inbox), [
                    {"consumer": self.name, "event_id": e.id, "event_type": e.type,
                     "processed_at": now}
                    for e in {e.id: e for e in events if e.id in claimed}.values()])
        fresh: list[CloudEvent] = []
        for event in events:
            if event.id in claimed:
                claimed.discard(event.id)  # a duplicate inside the batch counts once
                fresh.append(event)
        return fresh

    def _handle_events(self, uow: UnitOfWork, events: Sequence[CloudEvent]) -> None:
        """Hand the events over in their order; consecutive ones of a batch handler's type at once."""
        if self.prepare is not None and events:
            self.prepare(uow, events)
        run: list[CloudEvent] = []
        for event in events:
            if run and run[0].type != event.type:
                self._flush_run(uow, run)
                run = []
            if event.type in self.batch_handlers:
                run.append(event)
            else:
                # the event's trace continues here (its traceparent, written at publish time)
                with tracing.span(f"{self.name} process", parent=tracing.event_traceparent(event),
                                  kind="consumer", **{"messaging.message.id": event.id,
                                                      "cloudevents.event_type": event.type}):
                    self.handlers[event.type](uow, event)
        self._flush_run(uow, run)

    def _flush_run(self, uow: UnitOfWork, run: list[CloudEvent]) -> None:
        if run:
            with tracing.span(f"{self.name} process", parent=tracing.event_traceparent(run[0]),
                              kind="consumer", **{"messaging.batch.message_count": len(run),
                                                  "cloudevents.event_type": run[0].type}):
                self.batch_handlers[run[0].type](uow, run)


def _pg_claim_statement(inbox: Any) -> Executable:
    """INSERT the (consumer, id, type) rows of a JSON array of [id, type] pairs, skip those
    already there, and return the ids written: a fixed statement of three parameters, whatever
    the batch's size."""
    pair = func.jsonb_array_elements(
        cast(bindparam("events", type_=String), postgresql.JSONB),
    ).table_valued("value").render_derived(name="claimed")
    return (
        postgresql.insert(inbox)
        .from_select(
            ["consumer", "event_id", "event_type", "processed_at"],
            select(bindparam("consumer", type_=String), pair.c.value.op("->>")(0),
                   pair.c.value.op("->>")(1), bindparam("now", type_=UTCDateTime)),
        )
        .on_conflict_do_nothing()
        .returning(inbox.c.event_id)
    )


def payload_of(event: CloudEvent, model: type[P]) -> P:
    """The event's data validated by the payload model the contract's registry gives its type;
    `model` is what the handler takes (that model or a base of it). Bad data is a
    PermanentError naming each field at fault (the message is dead-lettered with it)."""
    try:
        return registry.parse(event.type, data_of(event), model)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise PermanentError(f"malformed {event.type}: {errors}") from exc


def data_of(event: CloudEvent) -> dict[str, Any]:
    """The event's data as a dict, or PermanentError."""
    if not isinstance(event.data, dict):
        raise PermanentError(f"{event.type}: data is not a JSON object")
    return event.data
