"""The order of checks on a request body: the token first (401/403 without reading a byte of it),
then its size (413 problem+json over HAI_MAX_BODY_BYTES, by Content-Length or by the bytes of a
chunked upload as they come, without reading the rest), and only then parsing (422).

FastAPI on its own reads and parses the whole body before a route's token dependency runs: an
unauthenticated 50 MB body would be parsed whole, and malformed JSON without a token get 422.
The gate in shared/web.py (RequestGate) runs first.

The ASGI tests count the chunks the app pulls from the connection; the wire tests talk to a real
uvicorn, declaring a body they never send: the answer comes all the same."""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

import pytest

from services.dashboard.session import COOKIE
from shared.auth import mint_token
from shared.settings import DEV_JWT_SECRET
from tests.doubles import running_server
from tests.factories import T0
from tests.helpers import auth, run_async, start_service, test_settings
from tests.unit.dashboard.fakes import FakeApis, client

MIB = 1024 * 1024
CHUNK = b"x" * (64 * 1024)
# one creating route per service, and a role that may use it
WRITES = {"inventory": ("/v1/pumps", "biomed"), "scheduling": ("/v1/patients", "nurse"),
          "alerts": ("/v1/silences", "oncall")}


class Upload:
    """An ASGI receive that hands out `chunks` body chunks and counts how many were pulled."""

    def __init__(self, chunks: int, chunk: bytes = CHUNK) -> None:
        self.chunks, self.chunk, self.pulled = chunks, chunk, 0

    async def __call__(self) -> dict[str, Any]:
        if self.pulled >= self.chunks:
            return {"type": "http.disconnect"}
        self.pulled += 1
        return {"type": "http.request", "body": self.chunk, "more_body": self.pulled < self.chunks}


def call(app: Any, path: str, upload: Upload, headers: dict[str, str], *,
         declare_length: bool) -> tuple[int, dict[str, str], bytes]:
    """Drive the ASGI app with one POST; its status, headers and body."""
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"content-type", b"application/json"))
    size = upload.chunks * len(upload.chunk)
    raw.append((b"content-length", str(size).encode()) if declare_length
               else (b"transfer-encoding", b"chunked"))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": raw, "client": ("127.0.0.1", 5000),
             "server": ("test", 80), "state": {}}
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    # on a thread of its own: a test before may leave an event loop running on this one
    failure: list[BaseException] = []

    def run() -> None:
        try:
            run_async(app(scope, upload, send))
        except BaseException as exc:  # noqa: BLE001 - raised again below, on the test's thread
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


@pytest.fixture(scope="module", params=list(WRITES))
def service(request, tmp_path_factory):
    return start_service(request.param, test_settings(tmp_path_factory.mktemp(request.param)))


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "chunked"])
def test_without_a_token_a_50_mb_body_is_refused_401_unread(service, declare_length):
    path, _ = WRITES[service.name]
    upload = Upload(chunks=800)  # 50 MiB
    status, headers, body = call(service.client.app, path, upload, {}, declare_length=declare_length)
    assert status == 401 and json.loads(body)["status"] == 401
    assert upload.pulled == 0
    assert headers["connection"] == "close"  # the rest is not worth draining


@pytest.mark.parametrize("claims", [{"roles": []}, {"roles": ["janitor"]}], ids=["none", "unknown"])
def test_a_token_without_a_known_role_is_refused_403_before_the_body(service, claims):
    path, _ = WRITES[service.name]
    token = mint_token("nobody", claims["roles"], secret=DEV_JWT_SECRET)
    upload = Upload(chunks=800)
    status, _, _ = call(service.client.app, path, upload, {"authorization": f"Bearer {token}"},
                        declare_length=True)
    assert status == 403 and upload.pulled == 0


def test_malformed_json_without_a_token_is_401_and_with_one_422(service):
    path, role = WRITES[service.name]
    anonymous = service.client.post(path, content=b'{"not json', headers={"content-type": "application/json"})
    assert anonymous.status_code == 401
    signed = service.client.post(path, content=b'{"not json',
                                 headers={"content-type": "application/json", **auth(role)})
    assert signed.status_code == 422


def test_over_the_limit_by_content_length_is_413_before_a_byte_is_read(service):
    path, role = WRITES[service.name]
    upload = Upload(chunks=32)  # 2 MiB
    status, headers, body = call(service.client.app, path, upload, auth(role).copy(),
                                 declare_length=True)
    assert status == 413 and upload.pulled == 0
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == 413 and str(MIB) in problem["detail"]
    assert headers["connection"] == "close"


def test_a_chunked_upload_is_cut_off_once_it_passes_the_limit(service):
    path, role = WRITES[service.name]
    upload = Upload(chunks=800)  # 50 MiB, no Content-Length
    status, headers, _ = call(service.client.app, path, upload, auth(role).copy(), declare_length=False)
    assert status == 413 and headers["connection"] == "close"
    assert upload.pulled == MIB // len(CHUNK) + 1  # the chunk that crossed the limit, no more


def test_a_body_within_the_limit_reaches_the_route_whole(service):
    path, role = WRITES[service.name]
    padded = json.dumps({"padding": "p" * (MIB - 100)}).encode()  # just under 1 MiB
    upload = Upload(chunks=1, chunk=padded)
    status, _, body = call(service.client.app, path, upload, auth(role).copy(), declare_length=False)
    assert status == 422, body  # parsed, and refused by the route's schema, not by the limit
    assert upload.pulled == 1


def test_the_limit_is_a_setting(tmp_path):
    svc = start_service("alerts", test_settings(tmp_path, max_body_bytes=1000))
    small = svc.client.post("/v1/silences", content=b"{" + b" " * 900 + b"}",
                            headers={"content-type": "application/json", **auth("oncall")})
    assert small.status_code == 422
    big = svc.client.post("/v1/silences", content=b"{" + b" " * 1000 + b"}",
                          headers={"content-type": "application/json", **auth("oncall")})
    assert big.status_code == 413


def _exchange(base: str, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send a request's head (declaring a body it never sends) and read until the server closes."""
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    return lines[0], dict(line.lower().split(": ", 1) for line in lines[1:]), body


def test_on_the_wire_the_answer_comes_without_the_declared_body(tmp_path):
    svc = start_service("scheduling", test_settings(tmp_path))
    head = ("POST /v1/patients HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Content-Length: {50 * MIB}\r\n")
    with running_server(svc.client.app) as base:
        status, headers, body = _exchange(base, (head + "\r\n").encode())
        assert status.startswith("HTTP/1.1 401") and headers["connection"] == "close"
        token = auth("nurse")["Authorization"]
        status, headers, body = _exchange(base, (head + f"Authorization: {token}\r\n\r\n").encode())
        assert status.startswith("HTTP/1.1 413") and headers["connection"] == "close"
        assert json.loads(body)["status"] == 413


def test_the_dashboard_sends_a_sessionless_form_to_sign_in_unread_and_caps_a_signed_in_one():
    fake = FakeApis()
    c = client(fake)
    app = c.app
    upload = Upload(chunks=800)
    status, headers, _ = call(app, "/stock/register", upload, {}, declare_length=True)
    assert status == 303 and headers["location"].startswith("/login") and upload.pulled == 0
    token = mint_token("nora.nurse", ["nurse"], secret=DEV_JWT_SECRET, now=T0)
    signed_in = {"cookie": f"{COOKIE}={token}"}
    upload = Upload(chunks=800)
    status, headers, _ = call(app, "/stock/register", upload, signed_in, declare_length=False)
    assert status == 413 and upload.pulled == MIB // len(CHUNK) + 1
    assert not fake.calls
