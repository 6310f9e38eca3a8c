"""Flow surveillance end to end on PostgreSQL and RabbitMQ: inventory's implant events and the
nurses' refills go into scheduling, whose outbox relay sends the lot's drift to alerts over the
broker; alerts keeps one open `lot_flow_drift` alert for the lot, updated as evidence grows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from services.alerts.models import Alert
from services.scheduling.models import ImplantedPump
from shared.clock import MovableClock
from shared.contracts.vocabulary import AlertKind
from shared.events import EVENTS_EXCHANGE, CloudEvent, EventType
from shared.messaging.base import OutgoingMessage
from shared.runtime import Worker
from tests.factories import T0, pump_implanted
from tests.helpers import start_service, wait_until
from tests.helpers import test_settings as settings_for
from tests.unit.scheduling.scheduling_support import patient, therapy
from tests.unit.scheduling.test_lot_surveillance import LOT_A, LOT_B, refill


def test_readings_in_raise_one_lot_alert_in_alerts(
        tmp_path: Path, pg_database: Callable[[str], str], fresh_vhost: str) -> None:
    from shared.messaging.rabbit import RabbitBus

    settings = settings_for(tmp_path, scheduling_database_url=pg_database("scheduling"),
                            alerts_database_url=pg_database("alerts"), amqp_url=fresh_vhost,
                            outbox_poll_seconds=0.05)
    clock = MovableClock(T0)
    bus = RabbitBus(fresh_vhost)
    scheduling = start_service("scheduling", settings, clock=clock, bus=bus)
    alerts = start_service("alerts", settings, clock=clock, bus=bus)
    workers = [Worker(scheduling.runtime, jobs=False), Worker(alerts.runtime, jobs=False)]
    for w in workers:
        w.start()
    try:
        pumps = [(f"A{i}", "LOT-A", dev) for i, dev in enumerate(LOT_A)]
        pumps += [(f"{lot[-1]}{i}", lot, dev) for lot in ("LOT-B", "LOT-C")
                  for i, dev in enumerate(LOT_B)]
        publisher = bus.publisher()
        publisher.publish_batch([OutgoingMessage(e.id, EVENTS_EXCHANGE, e.type, e.to_json_bytes())
                                 for e in (CloudEvent.create(
                                     source="/hai/test", type=EventType.PUMP_IMPLANTED,
                                     data=pump_implanted(serial, f"M-{serial}", lot_number=lot,
                                                         implanted_at=datetime(2026, 8, 1, tzinfo=UTC)))
                                     for serial, lot, _ in pumps)])
        publisher.close()

        def known() -> int:
            with scheduling.runtime.uow_factory() as uow:
                return len(uow.session.scalars(select(ImplantedPump.serial_number)).all())

        wait_until(lambda: known() == len(pumps), what="scheduling learns every implant", timeout_s=60)
        # the normal lots first, then the drifting one: two tests of lot A find it drifting
        for serial, _, dev in sorted(pumps, key=lambda p: p[1] == "LOT-A"):
            patient(scheduling, f"M-{serial}")
            therapy(scheduling, f"M-{serial}", serial, regimen="saline_maintenance",
                    start_on="2026-08-02")
            refill(scheduling, serial, 15, 0)
            refill(scheduling, serial, 1, 30 - 14 * (1 + dev / 100))

        def lot_alerts() -> list[dict[str, Any]]:
            with alerts.runtime.uow_factory() as uow:
                return [{"occurrences": a.occurrences, "dedup_key": a.dedup_key,
                         "center": a.center, "severity": a.severity, "details": a.details}
                        for a in uow.session.scalars(select(Alert).where(
                            Alert.kind == AlertKind.LOT_FLOW_DRIFT))]

        wait_until(lambda: [a["occurrences"] for a in lot_alerts()] == [2],
                   what="one lot alert, raised then repeated with the grown evidence", timeout_s=60)
    finally:
        for w in workers:
            w.stop()
        bus.close()
    (alert,) = lot_alerts()
    assert alert["dedup_key"] == "lot_flow_drift:INTERA-3000:LOT-A"
    assert alert["center"] is None and alert["severity"] == "warning"
    details = alert["details"]
    assert details["lot_pumps"] == 6 and details["rest_pumps"] == 12
    assert details["pump_serials"] == [f"A{i}" for i in range(6)]
    assert abs(details["difference_pct"] - 8.0) < 0.01
