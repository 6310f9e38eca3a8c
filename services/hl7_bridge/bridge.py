"""The bridge at run time: `pharmacy.orders` → RDE^O11 → the pharmacy (acknowledged on
RabbitMQ only after its `MSA|AA`), and the pharmacy's answers → `hai.pharmacy.order.status`
through the outbox (answered AA only after the commit)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from services.hl7_bridge import domain
from services.hl7_bridge.domain import Hl7Error, Identity, OrderControl, Refused, Unparseable
from services.hl7_bridge.models import ForwardedOrder, ReceivedAnswer, metadata, platform
from services.hl7_bridge.transport import MllpClient, MllpServer, Reply
from shared.clock import Clock
from shared.contracts.pharmacy import ORDERS_QUEUE_SPEC, OrderRequestedData, OrderStatusData
from shared.db import UnitOfWork
from shared.events import PHARMACY_EXCHANGE, CloudEvent, EventType
from shared.logging import safe_error
from shared.messaging.base import Bus, Delivery, Outcome
from shared.messaging.consumer import PermanentError, parse_event
from shared.runtime import ServiceRuntime, Worker, build_runtime
from shared.settings import Settings

log = structlog.get_logger(__name__)

NAME = "hl7_bridge"
CONSUMER = f"{ORDERS_QUEUE_SPEC.name} (hl7)"  # the consumer label of its metrics
CONTROLS: dict[str, OrderControl] = {EventType.ORDER_REQUESTED: "NW",
                                     EventType.ORDER_CANCELLED: "CA"}


def bootstrap(settings: Settings, *, clock: Clock | None = None, bus: Bus | None = None) -> ServiceRuntime:
    """The bridge's runtime: its database (orders sent, answers taken), outbox, and bus."""
    runtime = build_runtime(name=NAME, settings=settings, metadata=metadata, platform=platform,
                            clock=clock, bus=bus)
    runtime.declared_queues.append(ORDERS_QUEUE_SPEC)
    return runtime


def identity(settings: Settings) -> Identity:
    return Identity(settings.hl7_sending_application, settings.hl7_sending_facility,
                    settings.hl7_receiving_application, settings.hl7_receiving_facility)


def _validation_reason(exc: ValidationError) -> str:
    # the fields and what is wrong, never the values (the order carries patient data)
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())


@dataclass
class _Pending:
    index: int
    delivery: Delivery
    order_id: str
    control_id: str
    message: str


class Bridge:
    """Both directions of the bridge, on one runtime."""

    def __init__(self, runtime: ServiceRuntime, *, client: MllpClient | None = None) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.settings = settings
        worst_batch_s = settings.hl7_prefetch * (settings.hl7_ack_timeout_seconds
                                                 + settings.hl7_connect_timeout_seconds)
        if worst_batch_s >= settings.amqp_heartbeat_seconds:
            # the consumer's connection is not served while a batch is sent: past the heartbeat
            # the broker drops it, the batch comes back, and no attempt is ever counted
            raise ValueError(
                f"HAI_HL7_PREFETCH x (HAI_HL7_ACK_TIMEOUT_SECONDS + HAI_HL7_CONNECT_TIMEOUT_SECONDS)"
                f" = {worst_batch_s:g} s must stay under HAI_AMQP_HEARTBEAT_SECONDS "
                f"({settings.amqp_heartbeat_seconds} s)")
        self.identity = identity(settings)
        self.client = client or MllpClient(
            settings.hl7_pharmacy_host, settings.hl7_pharmacy_port,
            ack_timeout_seconds=settings.hl7_ack_timeout_seconds,
            connect_timeout_seconds=settings.hl7_connect_timeout_seconds)
        self.server = MllpServer(settings.hl7_listen_host, settings.hl7_listen_port, self.answer)
        self.worker = Worker(runtime, relay=True, consumers=False, jobs=False)
        self._consumer: threading.Thread | None = None
        # the orders' outcomes count with every consumer's (the alert rules on retries and dead
        # letters cover the bridge too); the pharmacy's messages by the ACK they got
        self.answers = Counter("hai_hl7_answers_total", "Messages of the pharmacy by our ACK",
                               ["ack"], registry=runtime.registry)

    # ------------------------------------------------------------ orders out

    def process(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        """Forward a batch of `pharmacy.orders` messages to the pharmacy, in order."""
        outcomes: list[Outcome | None] = [None] * len(deliveries)
        pending: list[_Pending] = []
        for i, delivery in enumerate(deliveries):
            try:
                item = self._prepare(i, delivery)
            except PermanentError as exc:
                log.warning("hl7.order_dead_lettered", message_id=delivery.message_id, reason=str(exc))
                outcomes[i] = Outcome.dead_letter(f"rejected: {exc}")
                continue
            if item is None:
                outcomes[i] = Outcome.ack()  # forwarded and acknowledged before: a redelivery
            else:
                pending.append(item)
        if pending:
            replies = self.client.exchange([p.message for p in pending])
            for item, reply in zip(pending, replies, strict=True):
                outcomes[item.index] = self._settle(item, reply)
        result = [o if o is not None else Outcome.ack() for o in outcomes]
        for outcome in result:
            self.runtime.events_handled.labels(consumer=CONSUMER, outcome=outcome.action).inc()
        return result

    def _prepare(self, index: int, delivery: Delivery) -> _Pending | None:
        event = parse_event(delivery)
        control = CONTROLS.get(event.type)
        if control is None:
            raise PermanentError(f"unknown event type {event.type!r}")
        try:
            order = OrderRequestedData.model_validate(event.data)
        except ValidationError as exc:
            raise PermanentError(f"malformed {event.type}: {_validation_reason(exc)}") from exc
        control_id = domain.control_id(order.order_id, control)
        with self.runtime.uow_factory() as uow:
            row = uow.session.get(ForwardedOrder, order.order_id, with_for_update=True)
            if row is not None and row.control_id == control_id and row.acked_at is not None:
                return None
            if row is None and control == "CA":
                # never sent: nothing to cancel at the pharmacy, and the order itself, should it
                # come back from the retry queue, must not go out after its cancellation
                uow.session.add(ForwardedOrder(order_id=order.order_id, order_control=control,
                                               control_id=control_id, first_sent_at=uow.now(),
                                               acked_at=uow.now()))
                uow.commit()
                log.info("hl7.cancelled_before_sending", order_id=order.order_id)
                return None
            if row is None:
                uow.session.add(ForwardedOrder(order_id=order.order_id, order_control=control,
                                               control_id=control_id, first_sent_at=uow.now()))
            elif row.control_id != control_id:
                if row.order_control == "CA":
                    raise PermanentError(f"order {order.order_id} already cancelled at the pharmacy")
                row.order_control, row.control_id, row.acked_at = control, control_id, None
            uow.commit()  # before the send: the pharmacy's answer must find the order
        message = domain.order_message(order, order_control=control, identity=self.identity,
                                       now=self.runtime.clock.now())
        return _Pending(index, delivery, order.order_id, control_id, message)

    def _settle(self, item: _Pending, reply: Reply) -> Outcome:
        reason: str
        if reply.text is None:
            reason = reply.error or "no reply"
        else:
            try:
                ack = domain.parse_ack(reply.text)
            except Unparseable as exc:
                ack, reason = None, f"the pharmacy's reply is not an ACK: {exc}"
            if ack is not None:
                if ack.acknowledged_id != item.control_id:
                    reason = "the pharmacy's ACK names another message (MSA-2)"
                elif ack.code in ("AA", "CA"):
                    with self.runtime.uow_factory() as uow:
                        row = uow.session.get(ForwardedOrder, item.order_id)
                        if row is not None and row.control_id == item.control_id:
                            row.acked_at = uow.now()
                        uow.commit()
                    log.info("hl7.order_sent", order_id=item.order_id, control_id=item.control_id)
                    return Outcome.ack()
                else:
                    reason = f"the pharmacy answered {ack.code}" + (
                        f" (HL7 error {ack.error_code})" if ack.error_code else "")
        attempts = item.delivery.attempts + 1
        log.warning("hl7.order_not_accepted", order_id=item.order_id, control_id=item.control_id,
                    attempts=attempts, max_attempts=self.settings.hl7_max_attempts,
                    reason=reason.split(":", 1)[0])
        if attempts >= self.settings.hl7_max_attempts:
            return Outcome.dead_letter(f"not accepted by the pharmacy after {attempts} attempts; "
                                       f"last: {reason}")
        return Outcome.retry(reason)

    # ------------------------------------------------------------ answers in

    def answer(self, block: bytes | None, broken: str | None) -> bytes:
        """The ACK to one block the pharmacy sent: AA once its status is in the outbox, AE for
        what cannot be read (or not now), AR for what the bridge will not take."""
        now = self.runtime.clock.now()
        message = None
        try:
            if block is None:
                raise Unparseable(broken or "broken MLLP block")
            try:
                text = block.decode(domain.ENCODING)
            except UnicodeDecodeError as exc:
                raise Unparseable("not UTF-8 text") from exc
            message = domain.parse(text)
            code, why = self._take(domain.read_answer(message))
        except Hl7Error as exc:
            code, why = exc.code, str(exc)
            log.warning("hl7.answer_refused", code=code, reason=why,
                        control_id=domain.field(message, "MSH", 10)[:40] if message else None)
        except (OperationalError, InterfaceError) as exc:
            code, why = "AE", "database unavailable, send again"
            log.error("hl7.answer_failed", error=type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 - one bad message never stops the listener
            code, why = "AE", "internal error"
            log.error("hl7.answer_failed", error=type(exc).__name__)
        self.answers.labels(ack=code).inc()
        return domain.ack_message(message, code, identity=self.identity, now=now,
                                  text=why).encode(domain.ENCODING)

    def _take(self, answer: domain.Answer) -> tuple[domain.AckCode, str]:
        try:
            data = OrderStatusData.model_validate(answer.status_data())
        except ValidationError as exc:
            raise Unparseable(f"{answer.message_type}: {_validation_reason(exc)}") from exc
        try:
            with self.runtime.uow_factory() as uow:
                if uow.session.get(ReceivedAnswer, (answer.sender, answer.control_id)) is not None:
                    log.info("hl7.answer_duplicate", order_id=answer.order_id,
                             control_id=answer.control_id)
                    return "AA", "already received"
                if uow.session.get(ForwardedOrder, answer.order_id) is None:
                    raise Refused(f"unknown order {answer.order_id[:64]}")
                self._publish(uow, answer, data)
                uow.commit()
        except IntegrityError as exc:  # the same message at once on another connection
            raise Unparseable("received twice at once, send again") from exc
        log.info("hl7.answer_taken", order_id=answer.order_id, status=answer.status,
                 message_type=answer.message_type, control_id=answer.control_id)
        return "AA", ""

    def _publish(self, uow: UnitOfWork, answer: domain.Answer, data: OrderStatusData) -> None:
        uow.session.add(ReceivedAnswer(sender=answer.sender, control_id=answer.control_id,
                                       order_id=answer.order_id, status=answer.status,
                                       event_id=answer.event_id, received_at=uow.now()))
        uow.session.flush()
        event = CloudEvent.create(source=f"/hai/{NAME}", type=EventType.ORDER_STATUS,
                                  data=data.model_dump(mode="json", exclude_none=True),
                                  subject=answer.order_id, time=uow.now(), id=answer.event_id)
        uow.publish_event(event, exchange=PHARMACY_EXCHANGE)

    # ------------------------------------------------------------ running

    def start(self) -> None:
        """Listen for the pharmacy, relay the outbox, consume `pharmacy.orders`."""
        self.server.start()
        self.worker.start()  # declares the exchanges and `pharmacy.orders` first
        self._consumer = threading.Thread(target=self._consume, name="hl7-orders", daemon=True)
        self._consumer.start()
        log.info("hl7.bridge_started", listen_port=self.server.port,
                 pharmacy=f"{self.settings.hl7_pharmacy_host}:{self.settings.hl7_pharmacy_port}")

    def _consume(self) -> None:
        stop = self.worker.stop_event
        while not stop.is_set():
            try:
                self.runtime.bus.consume(ORDERS_QUEUE_SPEC, self.process,
                                         prefetch=self.settings.hl7_prefetch, stop=stop,
                                         retry_delay_ms=self.settings.hl7_retry_delay_ms)
            except Exception as exc:  # noqa: BLE001 - the consumer never dies
                log.error("consumer.crashed", queue=ORDERS_QUEUE_SPEC.name, error=safe_error(exc))
                stop.wait(1.0)

    def stop(self) -> None:
        self.worker.stop()
        if self._consumer is not None:
            self._consumer.join(5.0)
        self.server.stop()


def run(settings: Settings, *, if_enabled: bool = False, metrics_port: int | None = None) -> None:
    """`hai hl7-bridge`: migrate the bridge's database, run until SIGINT/SIGTERM. With
    `if_enabled` and `HAI_HL7_ENABLED` off it only waits for the signal (a Procfile line that
    stays up, doing nothing, where no HL7 pharmacy is configured)."""
    import signal

    from shared.migrations import upgrade

    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    if if_enabled and not settings.hl7_enabled:
        log.info("hl7.bridge_disabled", hint="set HAI_HL7_ENABLED=true to run it")
        stopped.wait()
        return
    upgrade(NAME, settings.database_url(NAME))
    bridge = Bridge(bootstrap(settings))
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, registry=bridge.runtime.registry)
    bridge.start()
    stopped.wait()
    bridge.stop()
