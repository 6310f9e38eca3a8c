"""Auth, problem+json errors, pagination and Idempotency-Key on a toy service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from shared.auth import mint_token
from shared.settings import DEV_JWT_SECRET
from tests.helpers import auth
from tests.unit.platform.toyservice import toy_app, toy_runtime


@pytest.fixture
def client(tmp_path):
    runtime = toy_runtime(tmp_path)
    with TestClient(toy_app(runtime), raise_server_exceptions=False) as c:
        c.runtime = runtime  # type: ignore[attr-defined]
        yield c


def test_no_token_is_401_problem(client):
    r = client.get("/v1/widgets")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 401 and r.json()["title"] == "Unauthorized"


@pytest.mark.parametrize("make", [
    lambda: mint_token("x", ["nurse"], secret=DEV_JWT_SECRET, ttl=timedelta(seconds=-10)),
    lambda: mint_token("x", ["nurse"], secret="another-secret-entirely-0000000000"),
    lambda: jwt.encode({"sub": "x", "roles": ["admin"],
                        "exp": datetime.now(UTC) + timedelta(hours=1)}, None, algorithm="none"),
    lambda: "not-a-jwt",
])
def test_bad_tokens_are_401(client, make):
    r = client.get("/v1/widgets", headers={"Authorization": f"Bearer {make()}"})
    assert r.status_code == 401


def test_wrong_role_is_403_and_admin_passes(client):
    body = {"name": "a", "volume_ml": 3}
    assert client.post("/v1/widgets", json=body, headers=auth("pharmacist")).status_code == 403
    assert client.post("/v1/widgets", json=body, headers=auth("admin")).status_code == 201


def test_bad_input_is_422_naming_the_field(client):
    r = client.post("/v1/widgets", json={"name": "", "volume_ml": 99}, headers=auth("nurse"))
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"name", "volume_ml"}
    r = client.post("/v1/widgets", content=b"{not json", headers={**auth("nurse"),
                    "content-type": "application/json"})
    assert r.status_code == 422


def test_not_found_and_conflict(client):
    assert client.get("/v1/widgets/99", headers=auth("nurse")).status_code == 404
    body = {"name": "dup", "volume_ml": 1}
    assert client.post("/v1/widgets", json=body, headers=auth("nurse")).status_code == 201
    r = client.post("/v1/widgets", json=body, headers=auth("nurse"))
    assert r.status_code == 409 and "exists" in r.json()["detail"]


def test_cursor_pagination_walks_every_item_once(client):
    for i in range(7):
        client.post("/v1/widgets", json={"name": f"w{i}", "volume_ml": i}, headers=auth("nurse"))
    seen, cursor = [], None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/widgets", params=params, headers=auth("nurse")).json()
        seen += [w["name"] for w in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"w{i}" for i in range(7)]
    assert client.get("/v1/widgets", params={"limit": 501}, headers=auth("nurse")).status_code == 422
    assert client.get("/v1/widgets", params={"cursor": "garbage!"},
                      headers=auth("nurse")).status_code == 422


def test_idempotency_key_replays_and_refuses_other_body(client):
    headers = {**auth("nurse"), "Idempotency-Key": "k-1"}
    first = client.post("/v1/widgets", json={"name": "i", "volume_ml": 1}, headers=headers)
    again = client.post("/v1/widgets", json={"name": "i", "volume_ml": 1}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    other = client.post("/v1/widgets", json={"name": "j", "volume_ml": 1}, headers=headers)
    assert other.status_code == 409
    with client.runtime.uow_factory() as uow:  # type: ignore[attr-defined]
        outbox = uow.platform.outbox
        assert uow.session.scalar(select(func.count()).select_from(outbox)) == 1


def test_every_write_is_audited_with_actor(client):
    client.post("/v1/widgets", json={"name": "aud", "volume_ml": 2}, headers=auth("nurse", sub="n1"))
    with client.runtime.uow_factory() as uow:  # type: ignore[attr-defined]
        rows = uow.session.execute(select(uow.platform.audit)).all()
    assert [(r.actor, r.action, r.entity_type) for r in rows] == [("n1", "create", "widget")]
    assert rows[0].changes == {"name": "aud", "volume_ml": 2}


def test_health_ready_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    client.get("/v1/widgets", headers=auth("nurse"))
    metrics = client.get("/metrics").text
    assert 'hai_http_requests_total{method="GET",route="/v1/widgets",status="200"}' in metrics


def test_readyz_503_when_database_is_gone(tmp_path):
    runtime = toy_runtime(tmp_path)

    def broken() -> None:
        raise ConnectionError("db down")

    runtime.check_database = broken  # type: ignore[method-assign]
    with TestClient(toy_app(runtime)) as c:
        r = c.get("/readyz")
    assert r.status_code == 503 and r.json()["down"] == {"database": "ConnectionError"}
