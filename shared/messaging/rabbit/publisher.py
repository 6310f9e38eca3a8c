"""Publishing with pipelined confirms: a SelectConnection whose ioloop runs in a daemon thread of
its own, reached only through `add_callback_threadsafe`; batches wait for their confirms."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import pika
import pika.spec
from pika.adapters.select_connection import SelectConnection

from shared.messaging.base import OutgoingMessage, PublishError
from shared.messaging.rabbit.connection import PERSISTENT, Nodes, short
from shared.messaging.rabbit.topology import EXCHANGE_TYPES


def _resolve(future: Future[Any], exc: BaseException | None = None) -> None:
    """Complete a future from whichever thread notices first; later attempts are no-ops."""
    try:
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)
    except InvalidStateError:
        pass


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
            raise PublishError(short(exc)) from exc
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
        error = exc if isinstance(exc, PublishError) else PublishError(short(exc))
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
    """Publishes batches with pipelined confirms; reconnects by itself on the next call, to the
    first of `nodes` that answers (`parameters(url)` gives a node's connection parameters)."""

    def __init__(self, parameters: Callable[[str], pika.ConnectionParameters], nodes: Nodes,
                 *, connect_timeout: float = 10.0) -> None:
        self._parameters = parameters
        self._nodes = nodes
        self._connect_timeout = connect_timeout
        self._link: _PublishLink | None = None
        self._link_url: str | None = None
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
                self._drop_link(failed=True)
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
                self._drop_link(failed=True)
                raise

        def wait() -> None:
            try:
                link.wait(done, len(messages), max(deadline - time.monotonic(), 0.1))
            except PublishError:
                with self._lock:
                    if self._link is link:
                        self._drop_link(failed=True)
                raise

        return wait

    def _connected_link(self, timeout: float) -> _PublishLink:
        link = self._link
        if link is not None and link.usable:
            return link
        self._drop_link(failed=link is not None)
        urls = self._nodes.in_order()
        deadline = time.monotonic() + timeout
        failures = []
        for i, url in enumerate(urls):
            # a frozen node takes its whole share; the time left is shared by those after it
            share = max((deadline - time.monotonic()) / (len(urls) - i), 0.1)
            link = self._link = _PublishLink(self._parameters(url))
            self._link_url = url
            try:
                link.ready.result(share)
            except FutureTimeout:
                failures.append(f"no connection within {share:.1f}s")
            except Exception as exc:  # noqa: BLE001 - reported as the publish failing
                failures.append(short(exc))
            else:
                self._nodes.answered(url)
                return link
            self._drop_link(failed=True)
        raise PublishError("cannot connect: " + "; ".join(failures))

    def _drop_link(self, *, failed: bool = False) -> None:
        link, self._link = self._link, None
        if failed and self._link_url is not None:
            self._nodes.failed(self._link_url)  # the next link tries the other nodes first
        self._link_url = None
        if link is not None:
            link.close()

    def close(self) -> None:
        """Close the connection and end its thread."""
        with self._lock:
            self._drop_link()
