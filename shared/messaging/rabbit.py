"""RabbitMQ behind the Bus interface: quorum queues, pipelined publisher confirms, batch consumers.

Threading follows pika's rule of one connection per thread: a publisher owns a SelectConnection
whose ioloop runs in the publisher's own daemon thread and is reached only through
`add_callback_threadsafe`; each `consume` call owns a BlockingConnection on the calling thread.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from typing import Any

import pika
import pika.exceptions
import structlog
from pika.adapters.select_connection import SelectConnection

from shared.events import EVENTS_EXCHANGE, PHARMACY_EXCHANGE
from shared.messaging.base import (
    DLX_EXCHANGE,
    HEADER_ATTEMPTS,
    HEADER_DLQ_REASON,
    HEADER_ERROR,
    HEADER_ORIGINAL_EXCHANGE,
    HEADER_ORIGINAL_QUEUE,
    HEADER_ORIGINAL_ROUTING_KEY,
    RETRY_EXCHANGE,
    BatchProcessor,
    Delivery,
    OutgoingMessage,
    PublishError,
    QueueSpec,
)

log = structlog.get_logger(__name__)

EXCHANGE_TYPES: dict[str, str] = {
    EVENTS_EXCHANGE: "topic",
    PHARMACY_EXCHANGE: "topic",
    DLX_EXCHANGE: "direct",
    RETRY_EXCHANGE: "direct",
}
PERSISTENT = 2
MAX_BACKOFF_S = 10.0
CHECK_CACHE_S = 5.0
# headers the broker writes when it dead-letters or redelivers; a replayed message starts afresh
_BROKER_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue",
                   "x-first-death-reason", "x-delivery-count")


class BrokerUnavailable(ConnectionError):
    """RabbitMQ cannot be reached."""


class _ConsumerCancelled(Exception):
    """The broker cancelled our consumer (queue deleted or moved): reconnect."""


def queue_arguments(spec: QueueSpec) -> dict[str, Any]:
    """The main queue's arguments: quorum, and what the broker itself rejects goes to the DLQ."""
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": DLX_EXCHANGE,
        "x-dead-letter-routing-key": spec.name,
    }


def retry_queue_arguments(spec: QueueSpec, retry_delay_ms: int) -> dict[str, Any]:
    """The retry queue's arguments: hold each message for the delay, then back to its queue."""
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": retry_delay_ms,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": spec.name,
        # at-most-once (the default) could drop a retried message if the main queue were
        # unavailable at expiry; at-least-once keeps it in the retry queue until it lands
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def _declare_exchange(channel: Any, *, name: str, kind: str) -> None:
    channel.exchange_declare(name, exchange_type=kind, durable=True)


def _declare_queue(channel: Any, *, name: str, arguments: dict[str, Any],
                   bindings: Sequence[tuple[str, str]],
                   retired: Sequence[tuple[str, str]] = ()) -> None:
    channel.queue_declare(name, durable=True, arguments=arguments)
    for exchange, key in bindings:
        channel.queue_bind(name, exchange, routing_key=key)
    for exchange, key in retired:  # unbinding a binding that is not there is not an error
        channel.queue_unbind(name, exchange, routing_key=key)


def topology(queues: Sequence[QueueSpec],
             retry_delay_ms: int) -> list[tuple[str, Callable[[Any], None]]]:
    """The declarations for these queues, in order, each as (what, declare(channel))."""
    exchanges = dict(EXCHANGE_TYPES)
    for spec in queues:
        for exchange, _ in spec.bindings:
            exchanges.setdefault(exchange, "topic")
    steps: list[tuple[str, Callable[[Any], None]]] = [
        (f"exchange {name}", partial(_declare_exchange, name=name, kind=kind))
        for name, kind in exchanges.items()
    ]
    for spec in queues:
        steps += [
            (f"queue {spec.name}", partial(_declare_queue, name=spec.name,
                                           arguments=queue_arguments(spec),
                                           bindings=spec.bindings,
                                           retired=spec.retired_bindings)),
            (f"queue {spec.dlq}", partial(_declare_queue, name=spec.dlq,
                                          arguments={"x-queue-type": "quorum"},
                                          bindings=((DLX_EXCHANGE, spec.name),))),
            (f"queue {spec.retry_queue}", partial(
                _declare_queue, name=spec.retry_queue,
                arguments=retry_queue_arguments(spec, retry_delay_ms),
                bindings=((RETRY_EXCHANGE, spec.name),))),
        ]
    return steps


def _close_quietly(connection: Any) -> None:
    try:
        if connection is not None and connection.is_open:
            connection.close()
    except Exception:  # noqa: BLE001 - the connection is already broken; nothing to save
        pass


def _resolve(future: Future[Any], exc: BaseException | None = None) -> None:
    """Complete a future from whichever thread notices first; later attempts are no-ops."""
    try:
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)
    except InvalidStateError:
        pass


def _short(exc: BaseException) -> str:
    if isinstance(exc, PublishError):
        return str(exc)[:500]
    text = str(exc)
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:500]


class _Batch:
    """The confirms one batch waits for: its tags are contiguous, acks may come singly or many."""

    def __init__(self, future: Future[None], first: int, last: int) -> None:
        self.future = future
        self.first = first
        self.last = last
        self._next = first  # lowest tag not confirmed yet
        self._upto = 0  # highest tag acked with multiple=True
        self._singles: set[int] = set()

    def ack(self, tag: int, multiple: bool) -> None:
        if tag < self.first or (not multiple and tag > self.last):
            return
        if multiple:
            self._upto = max(self._upto, tag)
        else:
            self._singles.add(tag)
        while self._next <= self.last and (self._next <= self._upto or self._next in self._singles):
            self._singles.discard(self._next)
            self._next += 1
        if self._next > self.last:
            _resolve(self.future)


class _CoalescingConnection(SelectConnection):
    """A SelectConnection whose frames of one ioloop turn leave in one write.

    pika hands the transport each frame on its own, and the transport sends each with a
    `send()` of its own: three system calls per message (method, header, body), 1,500 for a
    relay batch of 500, and as many small segments for the broker to read. Here the frames
    queue up while the turn runs and go out joined, in their order, at the start of the next."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._outgoing: list[bytes] = []
        super().__init__(*args, **kwargs)

    def _output_marshaled_frames(self, marshaled_frames: Sequence[bytes]) -> None:
        # every frame pika sends passes here (pika 1.x); same statistics as pika keeps
        if not self._outgoing:
            self.ioloop.call_later(0, self._flush_outgoing)
        for marshaled in marshaled_frames:
            self.bytes_sent += len(marshaled)
            self.frames_sent += 1
            self._outgoing.append(marshaled)

    def _flush_outgoing(self) -> None:
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        # the connection may have been lost since the frames were queued: they are dropped, as
        # pika drops what is written to a transport no longer there
        if data and self._transport is not None:
            self._adapter_emit_data(data)


class _PublishLink:
    """One SelectConnection and its confirm-mode channel, driven by a daemon thread."""

    def __init__(self, parameters: pika.ConnectionParameters) -> None:
        self._parameters = parameters
        self.ready: Future[None] = Future()
        self.broken = False
        self._conn: SelectConnection | None = None
        self._channel: Any = None
        self._next_tag = 1
        # the batches sent and not yet confirmed, oldest first (their tags are in that order)
        self._batches: deque[_Batch] = deque()
        # guards the hand-over: no callback is queued on an ioloop that has already been closed
        self._lock = threading.Lock()
        self._loop_closed = False
        self._closing = False
        self._waiting: set[Future[None]] = set()
        self._thread = threading.Thread(target=self._run, name="hai-rabbit-publisher",
                                        daemon=True)
        self._thread.start()

    # -- caller's thread -------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self.ready.done() and self.ready.exception() is None and not self.broken

    def publish(self, messages: Sequence[OutgoingMessage], timeout: float) -> None:
        self.wait(self.send(messages), len(messages), timeout)

    def send(self, messages: Sequence[OutgoingMessage]) -> Future[None]:
        """Hand the messages to the ioloop; the future completes when all are confirmed."""
        done: Future[None] = Future()
        with self._lock:
            if self._loop_closed or self._conn is None or self.broken:
                raise PublishError("publisher connection is closed")
            self._waiting.add(done)
            self._conn.ioloop.add_callback_threadsafe(lambda: self._start(messages, done))
        return done

    def wait(self, done: Future[None], count: int, timeout: float) -> None:
        """Wait for a batch handed over by `send`; PublishError if refused, lost or late."""
        try:
            done.result(timeout)
        except FutureTimeout:
            self.broken = True
            raise PublishError(
                f"{count} messages not confirmed within {timeout:.1f}s") from None
        except PublishError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever broke, the caller sees a PublishError
            raise PublishError(_short(exc)) from exc
        finally:
            with self._lock:
                self._waiting.discard(done)

    def close(self) -> None:
        with self._lock:
            self._closing = True
            if not self._loop_closed and self._conn is not None:
                self._conn.ioloop.add_callback_threadsafe(self._close_in_loop)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    # -- the ioloop's thread ---------------------------------------------------------------

    def _run(self) -> None:
        conn: SelectConnection | None = None
        try:
            conn = _CoalescingConnection(
                self._parameters,
                on_open_callback=self._on_open,
                on_open_error_callback=self._on_open_error,
                on_close_callback=self._on_closed,
            )
            with self._lock:
                self._conn = conn
                if self._closing:
                    conn.ioloop.add_callback_threadsafe(self._close_in_loop)
            conn.ioloop.start()
        except Exception as exc:  # noqa: BLE001 - reported to whoever waits, then the thread ends
            self._fail(exc)
        finally:
            self.broken = True
            with self._lock:
                self._loop_closed = True
                waiting = list(self._waiting)
            self._fail(PublishError("publisher connection closed"))
            for done in waiting:
                _resolve(done, PublishError("publisher connection closed"))
            if conn is not None:
                try:
                    conn.ioloop.close()
                except Exception:  # noqa: BLE001 - only frees file descriptors
                    pass

    def _fail(self, exc: BaseException) -> None:
        self.broken = True
        error = exc if isinstance(exc, PublishError) else PublishError(_short(exc))
        _resolve(self.ready, error)
        for batch in self._batches:
            _resolve(batch.future, error)

    def _on_open(self, conn: Any) -> None:
        conn.channel(on_open_callback=self._on_channel_open)

    def _on_open_error(self, conn: Any, exc: BaseException) -> None:
        self._fail(exc)
        conn.ioloop.stop()

    def _on_closed(self, conn: Any, reason: BaseException) -> None:
        self._fail(reason)
        conn.ioloop.stop()

    def _on_channel_open(self, channel: Any) -> None:
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.confirm_delivery(self._on_confirm, callback=self._on_confirm_select_ok)

    def _on_confirm_select_ok(self, _frame: Any) -> None:
        # a message to a missing exchange would close the channel (404): declare ours first
        self._declare_exchanges(list(EXCHANGE_TYPES.items()))

    def _declare_exchanges(self, remaining: list[tuple[str, str]]) -> None:
        if not remaining:
            _resolve(self.ready)
            return
        name, kind = remaining[0]
        self._channel.exchange_declare(
            name, exchange_type=kind, durable=True,
            callback=lambda _frame: self._declare_exchanges(remaining[1:]),
        )

    def _on_channel_closed(self, _channel: Any, reason: BaseException) -> None:
        self._fail(reason)
        if self._conn is not None and self._conn.is_open:
            self._conn.close()

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag, multiple = method.delivery_tag, method.multiple
        if isinstance(method, pika.spec.Basic.Nack):
            for batch in self._batches:
                if batch.first <= tag and (multiple or tag <= batch.last):
                    _resolve(batch.future, PublishError(
                        f"broker refused message(s) up to tag {tag}"))
        else:
            for batch in self._batches:
                if batch.first > tag:
                    break
                batch.ack(tag, multiple)
        while self._batches and self._batches[0].future.done():
            self._batches.popleft()

    def _start(self, messages: Sequence[OutgoingMessage], done: Future[None]) -> None:
        channel = self._channel
        if channel is None or not channel.is_open or self.broken:
            _resolve(done, PublishError("publisher channel is closed"))
            return
        first = self._next_tag
        self._batches.append(_Batch(done, first, first + len(messages) - 1))
        try:
            for msg in messages:
                channel.basic_publish(
                    msg.exchange, msg.routing_key, msg.body,
                    pika.BasicProperties(
                        content_type=msg.content_type,
                        delivery_mode=PERSISTENT,
                        message_id=msg.message_id,
                        headers=dict(msg.headers) if msg.headers else None,
                    ),
                )
                self._next_tag += 1
        except Exception as exc:  # noqa: BLE001 - the channel broke mid-batch
            self._fail(exc)

    def _close_in_loop(self) -> None:
        conn = self._conn
        if conn is None:
            return
        if conn.is_open:
            conn.close()
        elif conn.is_closed:
            conn.ioloop.stop()
        # CLOSING: on_close_callback will stop the loop


class RabbitPublisher:
    """Publishes batches with pipelined confirms; reconnects by itself on the next call."""

    def __init__(self, parameters: Callable[[], pika.ConnectionParameters],
                 *, connect_timeout: float = 10.0) -> None:
        self._parameters = parameters
        self._connect_timeout = connect_timeout
        self._link: _PublishLink | None = None
        self._lock = threading.Lock()

    def publish_batch(self, messages: Sequence[OutgoingMessage], timeout: float = 30.0) -> None:
        """Publish every message persistently; return once the broker confirmed them all."""
        if not messages:
            return
        deadline = time.monotonic() + timeout
        with self._lock:
            link = self._connected_link(min(timeout, self._connect_timeout))
            try:
                link.publish(messages, max(deadline - time.monotonic(), 0.1))
            except PublishError:
                self._drop_link()
                raise

    def publish_batch_async(self, messages: Sequence[OutgoingMessage],
                            timeout: float = 30.0) -> Callable[[], None]:
        """Send every message persistently and return at once; calling the result waits until
        the broker confirmed them all (PublishError otherwise). Batches sent one after the
        other reach the broker in that order; several may await their confirms at once."""
        if not messages:
            return lambda: None
        deadline = time.monotonic() + timeout
        with self._lock:
            link = self._connected_link(min(timeout, self._connect_timeout))
            try:
                done = link.send(messages)
            except PublishError:
                self._drop_link()
                raise

        def wait() -> None:
            try:
                link.wait(done, len(messages), max(deadline - time.monotonic(), 0.1))
            except PublishError:
                with self._lock:
                    if self._link is link:
                        self._drop_link()
                raise

        return wait

    def _connected_link(self, timeout: float) -> _PublishLink:
        link = self._link
        if link is not None and link.usable:
            return link
        self._drop_link()
        link = self._link = _PublishLink(self._parameters())
        try:
            link.ready.result(timeout)
        except FutureTimeout:
            self._drop_link()
            raise PublishError(f"no broker connection within {timeout:.1f}s") from None
        except Exception as exc:  # noqa: BLE001 - reported as the publish failing
            self._drop_link()
            raise PublishError(f"cannot connect: {_short(exc)}") from exc
        return link

    def _drop_link(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()

    def close(self) -> None:
        """Close the connection and end its thread."""
        with self._lock:
            self._drop_link()


class RabbitBus:
    """The Bus on RabbitMQ: durable quorum queues, a retry queue with a delay and a DLQ each."""

    def __init__(self, url: str, *, heartbeat_seconds: int = 30,
                 retry_delay_ms: int = 2000) -> None:
        self.url = url
        self.heartbeat_seconds = heartbeat_seconds
        self.retry_delay_ms = retry_delay_ms
        self._closed = threading.Event()
        self._publishers: weakref.WeakSet[RabbitPublisher] = weakref.WeakSet()
        self._check_lock = threading.Lock()
        self._checked_at: float | None = None

    def parameters(self, purpose: str, *, connect_timeout: float = 10.0) -> pika.URLParameters:
        """Connection parameters from the URL, with our heartbeat, timeouts and a readable name."""
        params = pika.URLParameters(self.url)
        params.heartbeat = self.heartbeat_seconds
        params.blocked_connection_timeout = 60
        params.socket_timeout = connect_timeout
        params.stack_timeout = connect_timeout
        params.connection_attempts = 1
        params.client_properties = {"connection_name": f"hai {purpose}"}
        return params

    def _connect(self, purpose: str, *, connect_timeout: float = 10.0) -> Any:
        return pika.BlockingConnection(self.parameters(purpose, connect_timeout=connect_timeout))

    def declare(self, queues: Sequence[QueueSpec]) -> None:
        """Declare the exchanges and these queues, with their retry and dead-letter queues."""
        conn = self._connect("declare")
        try:
            channel = conn.channel()
            for _, declare in topology(queues, self.retry_delay_ms):
                declare(channel)
        finally:
            _close_quietly(conn)

    def publisher(self) -> RabbitPublisher:
        """A publisher for one thread's use (its connection runs in a thread of its own)."""
        pub = RabbitPublisher(lambda: self.parameters("publisher"))
        self._publishers.add(pub)
        return pub

    def consume(
        self,
        queue: QueueSpec,
        process: BatchProcessor,
        *,
        prefetch: int = 200,
        stop: Any,
        retry_delay_ms: int = 2000,
    ) -> None:
        """Consume `queue` in batches until `stop` is set, reconnecting with backoff."""
        _Consumer(self, queue, process, prefetch, stop, retry_delay_ms).run()

    def check(self) -> None:
        """Raise BrokerUnavailable when the broker cannot be reached (a success is kept 5 s)."""
        with self._check_lock:
            if self._checked_at is not None and time.monotonic() - self._checked_at < CHECK_CACHE_S:
                return
            try:
                _close_quietly(self._connect("check", connect_timeout=2.0))
            except Exception as exc:  # noqa: BLE001 - any failure means unreachable
                self._checked_at = None
                raise BrokerUnavailable(f"RabbitMQ unreachable: {_short(exc)}") from exc
            self._checked_at = time.monotonic()

    def close(self) -> None:
        """Close the publishers made here and end the consumers' loops."""
        self._closed.set()
        for pub in list(self._publishers):
            pub.close()

    def queue_depths(self, names: Sequence[str]) -> dict[str, int]:
        """Messages ready in each queue and in its `.dlq` (passive declares: creates nothing)."""
        conn = self._connect("queue-depths", connect_timeout=5.0)
        out: dict[str, int] = {}
        try:
            channel = conn.channel()
            for name in names:
                for queue_name in (name, f"{name}.dlq"):
                    try:
                        out[queue_name] = channel.queue_declare(
                            queue_name, passive=True).method.message_count
                    except pika.exceptions.ChannelClosedByBroker:
                        channel = conn.channel()  # not declared (yet): a 404 closes the channel
            return out
        finally:
            _close_quietly(conn)

    # -- dead-letter tools for `hai dlq` --------------------------------------------------

    def dlq_messages(self, queue_name: str, limit: int = 100) -> list[Delivery]:
        """Peek at up to `limit` dead letters of a queue; they stay in the DLQ."""
        dlq = queue_name if queue_name.endswith(".dlq") else f"{queue_name}.dlq"
        conn = self._connect("dlq-peek")
        try:
            channel = conn.channel()
            found: list[Delivery] = []
            # unacked gets are not handed out twice; closing the channel puts them all back
            while len(found) < limit:
                method, props, body = channel.basic_get(dlq, auto_ack=False)
                if method is None:
                    break
                headers = dict(props.headers or {})
                exchange, routing_key = _first_routing(headers, method.exchange,
                                                       method.routing_key)
                found.append(Delivery(
                    body=body, routing_key=routing_key, exchange=exchange,
                    message_id=props.message_id, headers=headers,
                    redelivered=method.redelivered, tag=method.delivery_tag,
                ))
            return found
        finally:
            _close_quietly(conn)

    def replay_dlq(self, queue_name: str, message_id: str | None = None) -> int:
        """Move dead letters (all, or the one with this message id) back to their queue."""
        name = queue_name.removesuffix(".dlq")
        dlq = f"{name}.dlq"
        conn = self._connect("dlq-replay")
        moved = 0
        try:
            channel = conn.channel()
            publish = conn.channel()
            publish.confirm_delivery()
            # bounded by what is there now: a replayed message failing again must not loop
            count = channel.queue_declare(dlq, passive=True).method.message_count
            for _ in range(count):
                method, props, body = channel.basic_get(dlq, auto_ack=False)
                if method is None:
                    break
                if message_id is not None and props.message_id != message_id:
                    continue  # held unacked: returns to the DLQ when the channel closes
                headers = {k: v for k, v in (props.headers or {}).items()
                           if k not in _BROKER_HEADERS
                           and k not in (HEADER_DLQ_REASON, HEADER_ERROR, HEADER_ORIGINAL_QUEUE)}
                headers[HEADER_ATTEMPTS] = 0
                publish.basic_publish(
                    "", name, body, _copy_properties(props, headers), mandatory=True)
                channel.basic_ack(method.delivery_tag)
                moved += 1
            return moved
        finally:
            _close_quietly(conn)


def _first_routing(headers: dict[str, Any], exchange: str, routing_key: str) -> tuple[str, str]:
    """Where a dead letter was first routed, as the in-process bus keeps it."""
    if HEADER_ORIGINAL_ROUTING_KEY in headers:
        return (str(headers.get(HEADER_ORIGINAL_EXCHANGE, exchange)),
                str(headers[HEADER_ORIGINAL_ROUTING_KEY]))
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[-1], dict):
        # dead-lettered by the broker itself (e.g. the pharmacy system's reject): the oldest
        # entry is last and holds the first exchange and routing keys
        first = deaths[-1]
        keys = first.get("routing-keys") or [routing_key]
        return str(first.get("exchange", exchange)), str(keys[0])
    return exchange, routing_key


def _copy_properties(props: Any, headers: dict[str, Any],
                     expiration: str | None = None) -> pika.BasicProperties:
    return pika.BasicProperties(
        content_type=props.content_type,
        content_encoding=props.content_encoding,
        delivery_mode=PERSISTENT,
        message_id=props.message_id,
        correlation_id=props.correlation_id,
        timestamp=props.timestamp,
        type=props.type,
        app_id=props.app_id,
        headers=headers,
        expiration=expiration,
    )


class _Consumer:
    """One `consume` call: a BlockingConnection on the calling thread, rebuilt after failures."""

    def __init__(self, bus: RabbitBus, queue: QueueSpec, process: BatchProcessor,
                 prefetch: int, stop: Any, retry_delay_ms: int) -> None:
        self.bus = bus
        self.queue = queue
        self.process = process
        self.prefetch = max(1, prefetch)
        self.stop = stop
        self.retry_delay_ms = retry_delay_ms
        self._backoff = 0.5

    def stopped(self) -> bool:
        return bool(self.stop.is_set()) or self.bus._closed.is_set()

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopped() and time.monotonic() < deadline:
            self.stop.wait(min(0.2, max(deadline - time.monotonic(), 0)))

    def run(self) -> None:
        while not self.stopped():
            try:
                self._session()
            except Exception as exc:  # noqa: BLE001 - a consumer outlives broker outages and bugs
                if self.stopped():
                    break
                log.warning("rabbit.consumer_reconnecting", queue=self.queue.name,
                            error=_short(exc), retry_in_s=self._backoff)
                self._pause(self._backoff)
                self._backoff = min(self._backoff * 2, MAX_BACKOFF_S)

    def _session(self) -> None:
        conn = self.bus._connect(f"consumer {self.queue.name}")
        try:
            self._ensure_topology(conn)
            channel = conn.channel()
            publish = conn.channel()
            publish.confirm_delivery()
            # twice the batch in flight: the next batch arrives while this one is handled
            channel.basic_qos(prefetch_count=self.prefetch * 2)
            pending: list[tuple[Any, Any, bytes]] = []
            channel.basic_consume(
                self.queue.name,
                lambda _ch, method, props, body: pending.append((method, props, body)),
            )
            self._backoff = 0.5
            log.info("rabbit.consuming", queue=self.queue.name, prefetch=self.prefetch)
            while not self.stopped():
                # returns as soon as deliveries are dispatched, or after 0.2 s to look at `stop`
                conn.process_data_events(time_limit=0.2)
                if not pending:
                    if not channel.consumer_tags:
                        raise _ConsumerCancelled(f"consumer on {self.queue.name} cancelled")
                    continue
                if len(pending) < self.prefetch:
                    conn.process_data_events(time_limit=0)  # take what else already arrived
                batch = pending[: self.prefetch]
                del pending[: self.prefetch]
                self._handle(channel, publish, batch)
        finally:
            # unacked deliveries go back to the queue when the connection closes
            _close_quietly(conn)

    def _ensure_topology(self, conn: Any) -> None:
        # the retry and dead-letter routes must exist before we rely on them (after a reset too)
        channel = conn.channel()
        for what, declare in topology([self.queue], self.bus.retry_delay_ms):
            try:
                declare(channel)
            except pika.exceptions.ChannelClosedByBroker as exc:
                # declared elsewhere with other arguments (another retry delay): use it as it
                # is, and still declare the rest; the failure closed the channel
                log.warning("rabbit.declare_mismatch", declaring=what, error=_short(exc))
                channel = conn.channel()

    def _delivery(self, method: Any, props: Any, body: bytes) -> Delivery:
        headers = dict(props.headers or {})
        exchange, routing_key = method.exchange, method.routing_key
        if exchange == "" and HEADER_ORIGINAL_ROUTING_KEY in headers:
            # came back from the retry queue (or a DLQ replay): show it as first routed
            exchange = str(headers.get(HEADER_ORIGINAL_EXCHANGE, ""))
            routing_key = str(headers[HEADER_ORIGINAL_ROUTING_KEY])
        return Delivery(body=body, routing_key=routing_key, exchange=exchange,
                        message_id=props.message_id, headers=headers,
                        redelivered=bool(method.redelivered), tag=method.delivery_tag)

    def _handle(self, channel: Any, publish: Any, batch: list[tuple[Any, Any, bytes]]) -> None:
        deliveries = [self._delivery(m, p, b) for m, p, b in batch]
        try:
            outcomes = self.process(deliveries)
            if len(outcomes) != len(deliveries):
                raise ValueError(f"{len(outcomes)} outcomes for {len(deliveries)} deliveries")
        except Exception as exc:  # noqa: BLE001 - a processor bug must not kill the consumer
            log.exception("rabbit.process_failed", queue=self.queue.name, error=_short(exc))
            # nothing was acked: give the batch back after a pause so a bug does not spin
            self._pause(1.0)
            channel.basic_nack(deliveries[-1].tag, multiple=True, requeue=True)
            return
        if all(o.action == "ack" for o in outcomes):
            channel.basic_ack(deliveries[-1].tag, multiple=True)
            return
        for delivery, outcome, (_, props, _) in zip(deliveries, outcomes, batch, strict=True):
            if outcome.action == "retry":
                self._publish_retry(publish, delivery, props, outcome.reason)
            elif outcome.action != "ack":
                reason = outcome.reason if outcome.action == "dead_letter" else (
                    f"unknown outcome {outcome.action!r}: {outcome.reason}")
                self._publish_dead_letter(publish, delivery, props, reason)
            # only now, with its copy confirmed by the broker, may the original go
            channel.basic_ack(delivery.tag)

    def _publish_retry(self, publish: Any, delivery: Delivery, props: Any,
                       reason: str | None) -> None:
        headers = dict(delivery.headers)
        headers[HEADER_ATTEMPTS] = delivery.attempts + 1
        headers[HEADER_ERROR] = reason or ""
        # it comes back through the default exchange: remember where it was first routed
        headers.setdefault(HEADER_ORIGINAL_EXCHANGE, delivery.exchange)
        headers.setdefault(HEADER_ORIGINAL_ROUTING_KEY, delivery.routing_key)
        # the per-message expiration lets this call's delay differ from the declared one
        # (the lower of the two wins)
        publish.basic_publish(
            RETRY_EXCHANGE, self.queue.name, delivery.body,
            _copy_properties(props, headers, expiration=str(self.retry_delay_ms)),
            mandatory=True,
        )

    def _publish_dead_letter(self, publish: Any, delivery: Delivery, props: Any,
                             reason: str | None) -> None:
        headers = dict(delivery.headers)
        headers[HEADER_DLQ_REASON] = reason or ""
        headers[HEADER_ORIGINAL_QUEUE] = self.queue.name
        headers[HEADER_ORIGINAL_EXCHANGE] = delivery.exchange
        headers[HEADER_ORIGINAL_ROUTING_KEY] = delivery.routing_key
        publish.basic_publish(DLX_EXCHANGE, self.queue.name, delivery.body,
                              _copy_properties(props, headers), mandatory=True)
        log.warning("rabbit.dead_lettered", queue=self.queue.name,
                    message_id=delivery.message_id, reason=reason)
