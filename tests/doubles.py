"""Test doubles for what lies outside the system, each on a real socket: a webhook receiver, a
pharmacy on the broker (and a tap on the events the services publish), a mail server, and the
ports the tests need.

Servers here bind port 0 and report the port they got. `free_port` is only for a server started
in another process that must be told its port in advance (a command line, a URL in settings):
its caller retries on "address already in use" (see `retry_on_address_in_use`).
"""

from __future__ import annotations

import contextlib
import json
import queue
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pika

from shared.events import CloudEvent, EventType
from tests.helpers import wait_until

T = TypeVar("T")

# ---------------------------------------------------------------- ports

# below the kernel's ephemeral range (32768-60999 by default): bind(0) elsewhere and every
# outgoing connection take their ports from that range, so a port picked here is rarely taken
# by them between this check and the server's own bind
PRIVATE_PORTS = range(20000, 32000)


def free_port(taken: set[int] | None = None) -> int:
    """A port in PRIVATE_PORTS that nothing listens on now (and not in `taken`): only for a
    server in another process that must be given its port; retry when it is taken first."""
    for _ in range(500):
        port = random.choice(PRIVATE_PORTS)
        if taken and port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port in the private range")


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports (see free_port)."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port(ports))
    return sorted(ports, key=lambda _: random.random())


def address_in_use(error: BaseException | str) -> bool:
    """Whether a failed start failed because another process took its port first."""
    text = str(error).lower()
    return "address already in use" in text or "eaddrinuse" in text


def retry_on_address_in_use(start: Callable[[int], T], *, tries: int = 3) -> T:
    """`start(attempt)` again (it picks new free ports each time) while it fails because
    another process took one of its ports first."""
    for attempt in range(tries):
        try:
            return start(attempt)
        except (RuntimeError, OSError, AssertionError) as exc:
            if not address_in_use(exc) or attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A port that refuses connections for the block: bound by us, never listening (a dead
    server, without the race of a port that someone else may start listening on)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


class ConnectionCounter:
    """A listener at (host, port) that counts the TCP connections reaching it and closes each
    at once (an address no page may reach)."""

    def __init__(self, host: str, port: int) -> None:
        self.connections = 0
        self._sock = socket.socket()
        self._sock.bind((host, port))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="test-counter", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


@contextlib.contextmanager
def connection_counter(host: str, port: int) -> Iterator[ConnectionCounter]:
    """A ConnectionCounter for the duration of a block."""
    counter = ConnectionCounter(host, port)
    try:
        yield counter
    finally:
        counter.close()


def tls_for(name: str, directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server's TLS context with a certificate for the DNS name `name` only (signed by a CA made
    for the test), and the path of that CA's certificate for the client to trust."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)

    def issued(subject: str, key: Any, issuer: x509.Name, signer: Any, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(minutes=5))
                   .not_valid_after(now + timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                                  critical=False))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
        else:
            builder = (builder
                       .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                       .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                      critical=False)
                       .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                           signer.public_key()), critical=False))
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "HAI test CA")])
    ca = issued("HAI test CA", ca_key, ca_name, ca_key, True)
    leaf = issued(name, key, ca_name, ca_key, False)
    pem = serialization.Encoding.PEM
    ca_path, chain, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca.public_bytes(pem))
    chain.write_bytes(leaf.public_bytes(pem))
    key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key_path)
    return context, ca_path


# ---------------------------------------------------------------- HTTP servers

class LocalHttpServer:
    """`handler` served on 127.0.0.1 port 0 in a thread of its own until close() (over TLS with
    a `tls` context)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], *,
                 tls: ssl.SSLContext | None = None) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="test-http",
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@contextlib.contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on 127.0.0.1 port 0 for the block; yields the base URL."""
    server = LocalHttpServer(handler)
    try:
        yield server.url
    finally:
        server.close()


@contextlib.contextmanager
def running_server(app: Any) -> Iterator[str]:
    """Serve an ASGI app with a real uvicorn on port 0 (as `hai serve` does); its base URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False,
                            lifespan="off", timeout_keep_alive=30)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), what="uvicorn to start")
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that does not write every request to stderr."""

    def log_message(self, *args: Any) -> None:
        return


@dataclass(frozen=True)
class Received:
    """One request as the receiver got it."""

    path: str
    headers: dict[str, str]
    body: bytes
    answered: int
    arrived_perf_s: float  # time.perf_counter() at arrival (benchmarks measure with it)


class WebhookReceiver:
    """The on-call's webhook: a real HTTP server recording every post.

    It answers 503 to the first `fail_first` posts (or to all with `always_fail`), or a 307 to
    `redirect_to`; each accepted page is in `pages` (`on(path)` by path) and in the `arrivals`
    queue, with its arrival time, for a reader that blocks on it."""

    def __init__(self, *, fail_first: int = 0, always_fail: bool = False,
                 redirect_to: str | None = None, answer: dict[str, Any] | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.fail_first = fail_first
        self.always_fail = always_fail
        self.redirect_to = redirect_to
        self.answer = json.dumps(answer).encode() if answer is not None else b""
        self.requests: list[Received] = []
        self.arrivals: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self.lock = threading.Lock()
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                arrived = time.perf_counter()
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    failing = (receiver.always_fail
                               or len(receiver.requests) < receiver.fail_first)
                    status = 307 if receiver.redirect_to else 503 if failing else 200
                    receiver.requests.append(Received(self.path, dict(self.headers.items()),
                                                      body, status, arrived))
                if status == 200:
                    receiver.arrivals.put((arrived, json.loads(body)))
                self.send_response(status)
                if status == 307:
                    self.send_header("location", receiver.redirect_to or "")
                answer = receiver.answer if status == 200 else b""
                if answer:
                    self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self._server = LocalHttpServer(Handler, tls=tls)
        self.base_url = self._server.url
        self.port = self._server.port

    @property
    def url(self) -> str:
        """The address to page (path /page)."""
        return self.url_for("/page")

    def url_for(self, path: str) -> str:
        """An address on this receiver with its own path (one receiver, many on-call members)."""
        return f"{self.base_url}{path}"

    @property
    def pages(self) -> list[dict[str, Any]]:
        """Every page accepted (200), oldest first."""
        with self.lock:
            return [json.loads(r.body) for r in self.requests if r.answered == 200]

    def on(self, path: str) -> list[dict[str, Any]]:
        """The pages accepted on one path."""
        with self.lock:
            return [json.loads(r.body) for r in self.requests
                    if r.answered == 200 and r.path == path]

    @property
    def received(self) -> list[tuple[dict[str, str], bytes]]:
        """Every request as it came, accepted or not: headers and the raw body."""
        with self.lock:
            return [(r.headers, r.body) for r in self.requests]

    @property
    def attempts(self) -> int:
        with self.lock:
            return len(self.requests)

    def close(self) -> None:
        self._server.close()


@contextlib.contextmanager
def webhook(**kwargs: Any) -> Iterator[WebhookReceiver]:
    """A webhook receiver for the duration of a block (arguments: WebhookReceiver's)."""
    receiver = WebhookReceiver(**kwargs)
    try:
        yield receiver
    finally:
        receiver.close()


class NtfyServer:
    """A self-hosted ntfy server, as much of its publish API as a page needs: `POST /` with JSON
    `{topic, title, message, ...}`, or `POST|PUT /{topic}` with the message as the body and the
    title in `X-Title`; it answers the message as ntfy does (`{id, time, event: "message", topic,
    message}`). With `password`, a publisher must send it (Basic auth, or `Bearer <password>`)
    or get 401; with `always_fail`, 503."""

    def __init__(self, *, password: str | None = None, always_fail: bool = False) -> None:
        self.password = password
        self.always_fail = always_fail
        self.messages: list[dict[str, Any]] = []  # accepted: {topic, title, message}
        self.refused = 0
        self.lock = threading.Lock()
        server = self

        class Handler(QuietHandler):
            def _publish(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path.strip("/"):
                    message = {"topic": self.path.strip("/"), "title": self.headers.get("x-title"),
                               "message": body.decode("utf-8", errors="replace")}
                else:
                    message = json.loads(body)
                status = 503 if server.always_fail else 200 if server._authorised(
                    self.headers.get("authorization")) else 401
                answer: dict[str, Any] = {"code": status, "error": "refused"}
                with server.lock:
                    if status == 200:
                        answer = {"id": f"m{len(server.messages) + 1}", "time": int(time.time()),
                                  "event": "message", "topic": message.get("topic"),
                                  "message": message.get("message")}
                        server.messages.append(message)
                    else:
                        server.refused += 1
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_POST = do_PUT = _publish  # noqa: N815 - http.server's names

        self._server = LocalHttpServer(Handler)
        self.port = self._server.port

    def _authorised(self, authorization: str | None) -> bool:
        if self.password is None:
            return True
        if not authorization:
            return False
        kind, _, value = authorization.partition(" ")
        if kind.lower() == "bearer":
            return value == self.password
        import base64

        return base64.b64decode(value).decode().partition(":")[2] == self.password

    def on(self, topic: str) -> list[dict[str, Any]]:
        """The messages accepted on one topic."""
        with self.lock:
            return [m for m in self.messages if m.get("topic") == topic]

    def close(self) -> None:
        self._server.close()


@contextlib.contextmanager
def ntfy_server(**kwargs: Any) -> Iterator[NtfyServer]:
    """An ntfy server for the duration of a block (arguments: NtfyServer's)."""
    server = NtfyServer(**kwargs)
    try:
        yield server
    finally:
        server.close()


# ---------------------------------------------------------------- mail

class MailInbox:
    """An SMTP handler keeping every message: (from, recipients, content)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                              envelope.content.decode("utf8", errors="replace")))
        return "250 Message accepted for delivery"


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[int, MailInbox]]:
    """A real SMTP server (aiosmtpd) on a port it bound itself: (port, its inbox)."""
    from aiosmtpd.controller import Controller

    class BoundController(Controller):
        """aiosmtpd's controller serving a socket bound beforehand (port 0)."""

        def __init__(self, handler: MailInbox, sock: socket.socket) -> None:
            super().__init__(handler, hostname="127.0.0.1", port=sock.getsockname()[1])
            self.sock = sock

        def _create_server(self) -> Any:
            return self.loop.create_server(self._factory_invoker, sock=self.sock)

    inbox = MailInbox()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    controller = BoundController(inbox, sock)
    controller.start()
    try:
        yield int(sock.getsockname()[1]), inbox
    finally:
        controller.stop()
        sock.close()


# ---------------------------------------------------------------- the broker's other side

class PharmacySimulator:
    """The pharmacy system: reads orders from `pharmacy.orders`, publishes statuses back."""

    def __init__(self, amqp_url: str) -> None:
        self.params = pika.URLParameters(amqp_url)
        self.orders: list[dict[str, Any]] = []

    def fetch_orders(self, timeout: float = 30) -> list[dict[str, Any]]:
        """Take every order waiting in the queue (at least one, within timeout)."""
        conn = pika.BlockingConnection(self.params)
        try:
            ch = conn.channel()
            got: list[dict[str, Any]] = []

            def take_all() -> bool:
                while True:
                    method, props, body = ch.basic_get("pharmacy.orders")
                    if method is None:
                        return bool(got)
                    got.append(json.loads(body))
                    ch.basic_ack(method.delivery_tag)

            wait_until(take_all, what="an order in pharmacy.orders", timeout_s=timeout)
            self.orders.extend(got)
            return got
        finally:
            conn.close()

    def send_status(self, order_id: str, status: str, *, reason: str | None = None,
                    raw: bytes | None = None, event_id: str | None = None,
                    lot: str | None = None, beyond_use_at: datetime | None = None) -> str:
        """Publish `hai.pharmacy.order.status` (or raw bytes) to hai.pharmacy; returns the id."""
        data: dict[str, Any] = {"order_id": order_id, "status": status,
                                "at": datetime.now(UTC).isoformat()}
        if reason:
            data["reason"] = reason
        if lot:
            data["lot"] = lot
        if beyond_use_at:
            data["beyond_use_at"] = beyond_use_at.isoformat()
        event = CloudEvent.create(source="/pharmacy/sim", type=EventType.ORDER_STATUS, data=data,
                                  subject=order_id, id=event_id)
        body = raw if raw is not None else event.to_json_bytes()
        conn = pika.BlockingConnection(self.params)
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            ch.basic_publish("hai.pharmacy", EventType.ORDER_STATUS, body, pika.BasicProperties(
                content_type="application/cloudevents+json", delivery_mode=2, message_id=event.id))
        finally:
            conn.close()
        return event.id


class EventTap:
    """A queue of the test's own on `hai.events`, bound to some event types: what the other
    services hear, read back from the broker."""

    def __init__(self, amqp_url: str, *routing_keys: str) -> None:
        self.conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
        self.ch = self.conn.channel()
        self.queue = self.ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
        for key in routing_keys:
            self.ch.queue_bind(self.queue, "hai.events", routing_key=key)
        self.seen: list[dict[str, Any]] = []

    def take(self) -> list[dict[str, Any]]:
        """Everything heard so far (the events are kept, oldest first)."""
        while True:
            method, _props, body = self.ch.basic_get(self.queue, auto_ack=True)
            if method is None:
                return self.seen
            self.seen.append(json.loads(body))

    def close(self) -> None:
        if self.conn.is_open:
            self.conn.close()
