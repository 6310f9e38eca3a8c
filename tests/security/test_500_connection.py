"""After a 500 the connection closes cleanly: the answer says `Connection: close`, its problem body
arrives whole, and a keep-alive client's next request succeeds (on a new connection).

Starlette on its own re-raises the exception after sending the 500, and uvicorn then drops the
connection without having said so: the client's next request on it could fail. ServerErrorGuard
(shared/errors.py) answers the 500 itself, saying `Connection: close`."""

from __future__ import annotations

import socket
from typing import Any

import httpx

from shared.auth import CurrentUser
from tests.doubles import running_server
from tests.helpers import auth
from tests.unit.dashboard.fakes import FakeApis
from tests.unit.dashboard.fakes import client as dashboard_client
from tests.unit.platform.toyservice import toy_app, toy_runtime


def _app_with_a_failing_route(tmp_path: Any) -> Any:
    app = toy_app(toy_runtime(tmp_path))

    @app.get("/v1/boom")
    def boom(_: CurrentUser) -> None:
        raise RuntimeError("a bug")

    return app


def test_a_500_says_connection_close_and_the_next_request_on_the_client_succeeds(tmp_path):
    opened: list[Any] = []

    def count_connections(event_name: str, info: dict[str, Any]) -> None:
        if event_name == "connection.connect_tcp.complete":
            opened.append(info)

    with running_server(_app_with_a_failing_route(tmp_path)) as base, \
            httpx.Client(base_url=base, headers=auth("nurse"), timeout=60) as client:
        first = client.get("/v1/widgets", extensions={"trace": count_connections})
        assert first.status_code == 200
        failed = client.get("/v1/boom", extensions={"trace": count_connections})
        assert failed.status_code == 500
        assert failed.headers["connection"] == "close"
        assert failed.headers["content-type"] == "application/problem+json"
        assert failed.json()["detail"] == "internal error; it has been logged"  # the body, whole
        after = client.get("/v1/widgets", extensions={"trace": count_connections})
        assert after.status_code == 200
        # the 500 shared the kept-alive connection; the next request took a new one
        assert len(opened) == 2


def test_on_the_wire_the_server_closes_after_the_whole_500(tmp_path):
    with running_server(_app_with_a_failing_route(tmp_path)) as base:
        port = int(base.rsplit(":", 1)[1])
        token = auth("nurse")["Authorization"]
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(f"GET /v1/boom HTTP/1.1\r\nHost: t\r\nAuthorization: {token}\r\n\r\n".encode())
            received = b""
            while chunk := sock.recv(65536):  # until the server closes: it must, cleanly
                received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 500 Internal Server Error"
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert headers["connection"] == "close"
    assert len(body) == int(headers["content-length"]) and body.startswith(b'{"type"')


def test_the_dashboard_too_closes_cleanly_after_a_500():
    app = dashboard_client(FakeApis()).app

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    with running_server(app) as base, httpx.Client(base_url=base, timeout=60) as client:
        failed = client.get("/boom")
        assert failed.status_code == 500 and failed.headers["connection"] == "close"
        assert "Something went wrong" in failed.text
        assert client.get("/healthz").status_code == 200
