"""`hai dlq list` shows dead letters with their reasons; `hai dlq replay` re-drives them after
a fix, and the fixed consumer handles them."""

from __future__ import annotations

import json
import threading

import pytest
from typer.testing import CliRunner

from shared.cli import app
from shared.events import CloudEvent
from shared.messaging.base import OutgoingMessage, QueueSpec
from shared.messaging.consumer import EventConsumer, PermanentError
from shared.messaging.rabbit import DeadLetters, RabbitBus
from shared.settings import get_settings
from tests.helpers import wait_until
from tests.unit.platform.toyservice import Seen, toy_runtime

QUEUE = QueueSpec("toy.dlq-tool", (("hai.events", "toy.widget.*"),))


def _wait(probe, what: str, timeout=20.0):
    return wait_until(probe, what=what, timeout_s=timeout)


@pytest.fixture
def cli_env(fresh_vhost, monkeypatch):
    monkeypatch.setenv("HAI_AMQP_URL", fresh_vhost)
    get_settings.cache_clear()
    yield fresh_vhost
    get_settings.cache_clear()


def test_list_then_replay_after_a_fix(cli_env, tmp_path):
    bus = RabbitBus(cli_env, retry_delay_ms=200)
    bus.declare([QUEUE])
    dead_letters = DeadLetters(bus.connect)
    runtime = toy_runtime(tmp_path)
    fixed = threading.Event()

    def handler(uow, event):
        if not fixed.is_set():
            raise PermanentError("volume_ml above the reservoir")  # the bug, before the fix
        uow.session.add(Seen(event_id=event.id))

    consumer = EventConsumer(QUEUE.name, QUEUE, {"toy.widget.created": handler},
                             runtime.uow_factory, max_attempts=2)
    stop = threading.Event()
    thread = threading.Thread(target=bus.consume, args=(QUEUE, consumer.process),
                              kwargs={"prefetch": 10, "stop": stop, "retry_delay_ms": 200},
                              daemon=True)
    thread.start()
    events = [CloudEvent.create(source="/t", type="toy.widget.created",
                                data={"id": i, "name": f"w{i}", "volume_ml": 1}) for i in range(2)]
    bus.publisher().publish_batch([OutgoingMessage(e.id, "hai.events", e.type, e.to_json_bytes())
                                   for e in events])
    runner = CliRunner()
    _wait(lambda: len(dead_letters.peek(QUEUE.name)) == 2, "two dead letters")

    listed = runner.invoke(app, ["dlq", "list", QUEUE.name, "--json"])
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert {r["message_id"] for r in rows} == {e.id for e in events}
    assert all("volume_ml above the reservoir" in r["reason"] for r in rows)
    table = runner.invoke(app, ["dlq", "list", QUEUE.name])
    assert table.exit_code == 0 and events[0].id in table.output

    fixed.set()
    one = runner.invoke(app, ["dlq", "replay", QUEUE.name, "--id", events[0].id])
    assert one.exit_code == 0 and "replayed 1" in one.output
    rest = runner.invoke(app, ["dlq", "replay", QUEUE.name])
    assert rest.exit_code == 0 and "replayed 1" in rest.output

    def handled() -> int:
        with runtime.uow_factory() as uow:
            return len(uow.session.query(Seen).all())

    _wait(lambda: handled() == 2, "both replayed messages handled")
    assert dead_letters.peek(QUEUE.name) == []
    stop.set()
    thread.join(5)
    bus.close()


def test_dlq_commands_need_the_broker_url(monkeypatch):
    monkeypatch.delenv("HAI_AMQP_URL", raising=False)
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["dlq", "list", "anything"])
    get_settings.cache_clear()
    assert result.exit_code == 2
