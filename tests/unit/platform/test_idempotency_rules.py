"""shared/idempotency.py without HTTP, on the toy service's SQLite database: what is stored under
a key, what a replay answers, the race with a request that committed the same key first, and what
makes two bodies the same (`make mutation` found these unpinned)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, Field
from sqlalchemy import func, insert, select

from shared.errors import Conflict
from shared.idempotency import Idempotency, _hash
from tests.unit.platform.toyservice import Widget, toy_runtime

SCOPE = "POST /v1/widgets nina"


class Out(BaseModel):
    widget_id: int = Field(serialization_alias="id")
    name: str


def _stored(rt: Any) -> list[tuple[Any, ...]]:
    table = rt.uow_factory.platform.idempotency
    with rt.uow_factory() as uow:
        return [tuple(r) for r in uow.session.execute(select(
            table.c.scope, table.c.key, table.c.request_hash, table.c.status_code, table.c.response_body))]


def _widgets(rt: Any) -> int:
    with rt.uow_factory() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(Widget)))


def _create(uow: Any, name: str) -> Any:
    def create() -> Out:
        uow.session.add(Widget(id=7, name=name, volume_ml=1))
        return Out(widget_id=7, name=name)
    return create


def test_the_first_answer_is_stored_under_scope_and_key_and_replayed(tmp_path: Any) -> None:
    rt = toy_runtime(tmp_path)
    body = {"name": "w", "volume_ml": 1}
    with rt.uow_factory() as uow:
        first = Idempotency("k-1", SCOPE).run(uow, body, _create(uow, "w"), status_code=202)
    assert (first.status_code, first.body, first.media_type) \
        == (202, b'{"id":7,"name":"w"}', "application/json")
    assert "idempotent-replayed" not in first.headers
    assert _stored(rt) == [(SCOPE, "k-1", _hash(body), 202, '{"id":7,"name":"w"}')]
    with rt.uow_factory() as uow:
        again = Idempotency("k-1", SCOPE).run(uow, {"volume_ml": 1, "name": "w"}, _create(uow, "other"))
    assert (again.status_code, again.body, again.headers["idempotent-replayed"]) \
        == (202, b'{"id":7,"name":"w"}', "true")
    assert again.media_type == "application/json"
    assert _widgets(rt) == 1


def test_the_same_key_with_another_body_is_a_conflict(tmp_path: Any) -> None:
    rt = toy_runtime(tmp_path)
    with rt.uow_factory() as uow:
        Idempotency("k-1", SCOPE).run(uow, {"name": "w"}, _create(uow, "w"))
    with rt.uow_factory() as uow, pytest.raises(Conflict) as exc:
        Idempotency("k-1", SCOPE).run(uow, {"name": "v"}, _create(uow, "v"))
    assert str(exc.value) == "Idempotency-Key 'k-1' was already used with a different request body"


def test_the_same_key_in_another_scope_is_another_request(tmp_path: Any) -> None:
    rt = toy_runtime(tmp_path)
    with rt.uow_factory() as uow:
        Idempotency("k-1", SCOPE).run(uow, {"name": "w"}, _create(uow, "w"))
    with rt.uow_factory() as uow:
        other = Idempotency("k-1", "POST /v1/widgets omar").run(
            uow, {"name": "w"}, lambda: {"plain": [1, 2]}, status_code=201)
    assert (other.status_code, other.body) == (201, b'{"plain": [1, 2]}')
    assert "idempotent-replayed" not in other.headers
    assert [r[0] for r in _stored(rt)] == [SCOPE, "POST /v1/widgets omar"]


def test_without_a_key_nothing_is_stored(tmp_path: Any) -> None:
    rt = toy_runtime(tmp_path)
    with rt.uow_factory() as uow:
        answer = Idempotency(None, SCOPE).run(uow, {"name": "w"}, _create(uow, "w"))
    assert (answer.status_code, answer.body) == (201, b'{"id":7,"name":"w"}')
    assert _stored(rt) == []
    assert _widgets(rt) == 1


def test_a_request_that_committed_the_same_key_first_is_answered_as_it_was(tmp_path: Any) -> None:
    """The race: our first look saw no key; the winner commits its creation and key; our creation
    then collides with its row: answer with the winner's stored answer, not an error."""
    rt = toy_runtime(tmp_path)
    body = {"name": "w"}
    idem = Idempotency("k-1", SCOPE)
    with rt.uow_factory() as uow:
        def create_after_the_winner() -> Out:
            with rt.uow_factory() as winner:
                winner.session.add(Widget(id=7, name="w", volume_ml=1))
                winner.session.execute(insert(winner.platform.idempotency).values(
                    scope=SCOPE, key="k-1", request_hash=_hash(body), status_code=201,
                    response_body='{"id":7,"name":"w","winner":true}', created_at=winner.now()))
                winner.commit()
            return _create(uow, "w")()

        answer = idem.run(uow, body, create_after_the_winner)
    assert (answer.status_code, answer.body, answer.headers["idempotent-replayed"]) \
        == (201, b'{"id":7,"name":"w","winner":true}', "true")
    assert _widgets(rt) == 1


def test_a_clash_without_a_key_or_without_a_stored_answer_is_raised(tmp_path: Any) -> None:
    rt = toy_runtime(tmp_path)

    def refuse() -> Any:
        raise Conflict("widget 'w' exists")

    for key in (None, "k-2"):
        with rt.uow_factory() as uow, pytest.raises(Conflict) as exc:
            Idempotency(key, SCOPE).run(uow, {"name": "w"}, refuse)
        assert str(exc.value) == "widget 'w' exists"
    assert _stored(rt) == []


def test_a_body_hashes_by_its_content_not_its_key_order_or_model() -> None:
    class Body(BaseModel):
        name: str
        volume_ml: int

    expected = hashlib.sha256(b'{"name":"w","volume_ml":1}').hexdigest()
    assert _hash({"volume_ml": 1, "name": "w"}) == _hash({"name": "w", "volume_ml": 1}) == expected
    assert _hash(Body(name="w", volume_ml=1)) == expected
    assert _hash({"name": "w", "volume_ml": 2}) != expected


def test_a_replay_does_not_run_the_creation_again(tmp_path: Any) -> None:
    rt = toy_runtime(tmp_path)
    with rt.uow_factory() as uow:
        Idempotency("k-1", SCOPE).run(uow, {"name": "w"}, _create(uow, "w"))

    def must_not_run() -> Any:
        raise AssertionError("a replay ran the creation again")

    with rt.uow_factory() as uow:
        replay = Idempotency("k-1", SCOPE).run(uow, {"name": "w"}, must_not_run)
    assert replay.headers["idempotent-replayed"] == "true"


def test_two_keys_of_one_caller_are_two_requests(tmp_path: Any) -> None:
    rt = toy_runtime(tmp_path)
    with rt.uow_factory() as uow:
        Idempotency("k-1", SCOPE).run(uow, {"name": "w"}, _create(uow, "w"))
    with rt.uow_factory() as uow:
        second = Idempotency("k-2", SCOPE).run(uow, {"name": "v"}, lambda: {"name": "v"})
    assert (second.status_code, second.body) == (201, b'{"name": "v"}')
    assert [r[1] for r in _stored(rt)] == ["k-1", "k-2"]


def test_a_model_body_hashes_as_its_json_form() -> None:
    """Stored hashes outlive a deploy: a retry after it must hash as before (datetimes as JSON)."""
    class Dated(BaseModel):
        at: datetime

    at = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert _hash(Dated(at=at)) == hashlib.sha256(b'{"at":"2026-11-26T12:00:00Z"}').hexdigest()
