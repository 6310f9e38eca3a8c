"""The backup drill: back up the three databases in the middle of a clinical story, restore them
into fresh PostgreSQL databases and start the services on them.

The APIs answer the same; the outbox and inbox keep exactly-once across the restore: no event
sent before the backup is announced again, every event not yet sent is sent after it, and an
event consumed before the backup, delivered again, changes nothing. `hai backup` / `hai restore`
are also driven through the CLI (on PostgreSQL, and on SQLite where the file is copied by the
online backup API).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from services.cli import app as hai
from services.registry import SERVICES
from services.settings import get_settings
from shared.backup import BackupError, backup, restore
from shared.clock import MovableClock
from shared.events import EVENTS_EXCHANGE
from shared.messaging.base import OutgoingMessage
from shared.messaging.inproc import InProcessBus
from tests.factories import T0
from tests.helpers import Harness, auth, deliver, start_service, test_settings

ADMIN = auth("admin", sub="drill")
SERIAL, MRN = "SN-DRILL-1", "MRN-DRILL-1"


def _start_all(settings, clock: MovableClock) -> tuple[dict[str, Harness], InProcessBus]:
    bus = InProcessBus()
    system = {name: start_service(name, settings, clock=clock, bus=bus) for name in SERVICES}
    bus.declare([q for h in system.values() for q in h.runtime.all_queues()])
    return system, bus


def _ok(r: Any) -> Any:
    assert r.status_code in (200, 201), r.text
    return r.json()


def _story_until_backup(system: dict[str, Harness], bus: InProcessBus) -> None:
    """Register, implant, patient, therapy, a first refill (all delivered), then a second refill
    with an abnormal flow whose events are still in scheduling's outbox."""
    inv, sch = system["inventory"].client, system["scheduling"].client
    _ok(inv.post("/v1/pumps", headers=ADMIN, json={
        "serial_number": SERIAL, "model_code": "DEMO-INTERA-3000", "lot_number": "LOT-D",
        "expiry_date": "2029-12-31"}))
    _ok(inv.post(f"/v1/pumps/{SERIAL}/implant", headers=ADMIN, json={
        "patient_mrn": MRN, "implanted_at": (T0 - timedelta(days=40)).isoformat(),
        "center": "north"}))
    _ok(sch.post("/v1/patients", headers=ADMIN, json={
        "mrn": MRN, "given_name": "Ada", "family_name": "Lovelace", "birth_date": "1960-05-01",
        "weight_kg": 70, "center": "north"}))
    deliver(list(system.values()), bus)
    _ok(sch.post("/v1/therapies", headers=ADMIN, json={
        "patient_mrn": MRN, "pump_serial": SERIAL, "regimen": "saline_maintenance",
        "start_on": (T0 - timedelta(days=30)).date().isoformat()}))
    _ok(sch.post("/v1/refills", headers=ADMIN, json={
        "pump_serial": SERIAL, "performed_at": (T0 - timedelta(days=28)).isoformat(),
        "residual_volume_ml": 0, "fill_volume_ml": 30, "fill_type": "saline"}))
    deliver(list(system.values()), bus)
    # 14 days at a labeled 1 mL/day would leave 16 mL: 2 mL left is a fast pump
    _ok(sch.post("/v1/refills", headers=ADMIN, json={
        "pump_serial": SERIAL, "performed_at": (T0 - timedelta(days=14)).isoformat(),
        "residual_volume_ml": 2, "fill_volume_ml": 30, "fill_type": "saline"}))


READS = {
    "inventory": [f"/v1/pumps/{SERIAL}", f"/v1/pumps/{SERIAL}/history", "/v1/pumps"],
    "scheduling": [f"/v1/patients/{MRN}", "/v1/therapies", "/v1/appointments", "/v1/refills",
                   f"/v1/pumps/{SERIAL}/flow-readings", "/v1/deliveries"],
    "alerts": ["/v1/alerts", "/v1/notifications"],
}


def _answers(system: dict[str, Harness]) -> dict[str, Any]:
    return {f"{name} {path}": _ok(system[name].client.get(path, headers=ADMIN))
            for name, paths in READS.items() for path in paths}


def _outbox(h: Harness) -> dict[str, datetime | None]:
    """event id → published_at, of every outbox row."""
    table = h.runtime.platform.outbox
    with h.runtime.engine.connect() as conn:
        return {row.event_id: row.published_at
                for row in conn.execute(select(table.c.event_id, table.c.published_at))}


def _count(h: Harness, table_name: str) -> int:
    table = h.runtime.metadata.tables[table_name]
    with h.runtime.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_restore_drill_answers_the_same_and_keeps_exactly_once(
        tmp_path: Path, pg_database: Callable[[str], str]) -> None:
    clock = MovableClock(T0)
    original = test_settings(tmp_path, **{f"{s}_database_url": pg_database(s) for s in SERVICES})
    system, bus = _start_all(original, clock)
    _story_until_backup(system, bus)

    files = {s: tmp_path / f"{s}.dump" for s in SERVICES}
    for s in SERVICES:
        backup(original.database_url(s), files[s])
    answers = _answers(system)
    outboxes = {s: _outbox(system[s]) for s in SERVICES}
    unsent = {s: {i for i, at in rows.items() if at is None} for s, rows in outboxes.items()}
    assert unsent["scheduling"], "the story must leave events unsent at the backup"
    assert any(at is not None for at in outboxes["scheduling"].values())
    sent_before = {i for rows in outboxes.values() for i, at in rows.items() if at is not None}
    assert answers["alerts /v1/alerts"]["items"] == []  # the abnormal flow is not announced yet
    # the original moves on after the backup: what it does is not in the backup
    _ok(system["scheduling"].client.patch(f"/v1/patients/{MRN}", headers=ADMIN,
                                          json={"weight_kg": 71}))

    restored_settings = test_settings(
        tmp_path, **{f"{s}_database_url": pg_database(f"{s}_restored") for s in SERVICES})
    for s in SERVICES:
        restore(restored_settings.database_url(s), files[s])
    restored, new_bus = _start_all(restored_settings, clock)

    assert _answers(restored) == answers
    assert {s: _outbox(restored[s]) for s in SERVICES} == outboxes  # sent rows stay sent

    # the relays send exactly what had not been sent; the consumers take it; the abnormal
    # flow then raises its alert, once
    outcomes = deliver(list(restored.values()), new_bus)
    assert all(o.action == "ack" for o in outcomes), outcomes
    relayed = [m.message_id for m in new_bus.published]
    assert not set(relayed) & sent_before, "an event sent before the backup was announced again"
    assert set(unsent["scheduling"]) <= set(relayed), "an unsent event was lost"
    assert len(relayed) == len(set(relayed))
    alerts = _ok(restored["alerts"].client.get("/v1/alerts", headers=ADMIN))["items"]
    assert [a["kind"] for a in alerts] == ["flow_abnormal"], alerts

    # an event consumed before the backup (inventory's implant), delivered again: ignored
    inventory_outbox = restored["inventory"].runtime.platform.outbox
    with restored["inventory"].runtime.engine.connect() as conn:
        seq, body, key = conn.execute(select(
            inventory_outbox.c.seq, inventory_outbox.c.body, inventory_outbox.c.routing_key)
            .where(inventory_outbox.c.routing_key.like("%implanted%"))).one()
    event_id = json.loads(body)["id"]
    assert event_id in sent_before
    before = {s: (_count(restored[s], "inbox"), len(_outbox(restored[s]))) for s in SERVICES}
    appointments = _ok(restored["scheduling"].client.get("/v1/appointments", headers=ADMIN))
    new_bus.publish_batch([OutgoingMessage(message_id=event_id, exchange=EVENTS_EXCHANGE,
                                           routing_key=key, body=body.encode())])
    outcomes = deliver(list(restored.values()), new_bus)
    assert outcomes and all(o.action == "ack" for o in outcomes), outcomes
    assert {s: (_count(restored[s], "inbox"), len(_outbox(restored[s]))) for s in SERVICES} \
        == before
    assert _ok(restored["scheduling"].client.get("/v1/appointments", headers=ADMIN)) \
        == appointments


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch):
    def use(service: str, url: str) -> None:
        monkeypatch.setenv(f"HAI_{service.upper()}_DATABASE_URL", url)
        get_settings.cache_clear()

    yield use
    get_settings.cache_clear()


def _patients(url: str) -> list[str]:
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT mrn FROM patients ORDER BY mrn")).scalars())
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_hai_backup_then_restore_through_the_cli(backend, tmp_path, cli_env,
                                                 pg_database: Callable[[str], str]) -> None:
    if backend == "sqlite":
        first, second = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    else:
        first, second = pg_database("scheduling"), pg_database("scheduling_copy")
    harness = start_service("scheduling", test_settings(tmp_path, scheduling_database_url=first))
    _ok(harness.client.post("/v1/patients", headers=ADMIN, json={
        "mrn": "MRN-CLI", "given_name": "Ada", "family_name": "Lovelace",
        "birth_date": "1960-05-01", "weight_kg": 70, "center": "north"}))
    harness.runtime.engine.dispose()
    runner = CliRunner()
    cli_env("scheduling", first)
    r = runner.invoke(hai, ["backup", "scheduling", "--to", str(tmp_path / "s.bak")])
    assert r.exit_code == 0, r.output
    cli_env("scheduling", second)
    r = runner.invoke(hai, ["restore", "scheduling", "--from", str(tmp_path / "s.bak")])
    assert r.exit_code == 0, r.output
    assert _patients(second) == ["MRN-CLI"]
    # restoring again over the restored copy replaces it (--clean --if-exists), no error
    r = runner.invoke(hai, ["restore", "scheduling", "--from", str(tmp_path / "s.bak")])
    assert r.exit_code == 0, r.output
    assert _patients(second) == ["MRN-CLI"]


def test_a_missing_backup_is_refused_with_the_reason(tmp_path):
    with pytest.raises(BackupError, match="no backup"):
        restore(f"sqlite:///{tmp_path}/x.db", tmp_path / "absent.dump")
    with pytest.raises(BackupError, match="in-memory"):
        backup("sqlite://", tmp_path / "x.bak")
