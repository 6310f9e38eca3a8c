"""End to end on RabbitMQ and PostgreSQL, the three services with their workers: a patient's
transfer to another centre (issue 22). After it the new centre's worklist shows the patient's
next refill and the old centre's does not; an overdue refill of the patient is paged to the new
centre's on-call (whether it was raised before the transfer or after it), and inventory's
implant record takes the new centre. A token lacking the old centre gets 404 and moves nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from services.alerts import paging
from services.scheduling.jobs import sweep
from services.scheduling.models import Appointment, ImplantedPump, Patient
from shared.clock import MovableClock
from shared.messaging.rabbit import RabbitBus
from shared.runtime import Worker
from tests.doubles import WebhookReceiver, webhook
from tests.factories import T0
from tests.helpers import Harness, auth, start, test_settings, wait_until
from tests.security.stories import pump_body
from tests.unit.scheduling.scheduling_support import patient, therapy

NORTH, SOUTH = "north", "south"
ADMIN = auth("admin", sub="admin")
BOTH = auth("nurse", sub="mover", centers=[NORTH, SOUTH])
NORTH_NURSE = auth("nurse", sub="n-nurse", centers=[NORTH])
SOUTH_NURSE = auth("nurse", sub="s-nurse", centers=[SOUTH])
System = tuple[Harness, Harness, Harness, MovableClock]


@contextmanager
def the_system(tmp_path: Path, vhost: str, pg_database: Callable[[str], str]) -> Iterator[System]:
    """Inventory, scheduling and alerts on PostgreSQL, their workers (no jobs: the test sweeps)
    consuming from RabbitMQ: (inventory, scheduling, alerts, clock at T0)."""
    names = ("inventory", "scheduling", "alerts")
    settings = test_settings(tmp_path, amqp_url=vhost, consumer_retry_delay_ms=200,
                             outbox_poll_seconds=0.1,
                             **{f"{n}_database_url": pg_database(n) for n in names})
    bus = RabbitBus(vhost, retry_delay_ms=200)
    clock = MovableClock(T0)
    harnesses = [start(n, settings, clock, bus)[0] for n in names]
    workers = [Worker(h.runtime, jobs=False) for h in harnesses]
    try:
        for w in workers:
            w.start()
        inventory, scheduling, alerts = harnesses
        yield inventory, scheduling, alerts, clock
    finally:
        for w in workers:
            w.stop()
        bus.close()


def _implanted(inv: Harness, sched: Harness, serial: str, mrn: str) -> None:
    """Inventory implants the pump at north; scheduling learns it over RabbitMQ."""
    assert inv.client.post("/v1/pumps", json=pump_body(serial), headers=ADMIN).status_code == 201
    r = inv.client.post(f"/v1/pumps/{serial}/implant", headers=ADMIN, json={
        "patient_mrn": mrn, "implanted_at": (T0 - timedelta(days=30)).isoformat(),
        "center": NORTH})
    assert r.status_code == 200, r.text
    wait_until(lambda: sched.client.get(f"/v1/pumps/{serial}/flow-readings",
                                        headers=ADMIN).status_code == 200,
               what=f"scheduling to learn the implant of {serial}", timeout_s=30)


def _centres(sched: Harness, mrn: str) -> tuple[Any, ...]:
    with sched.runtime.uow_factory() as uow:
        s = uow.session
        return (s.scalar(select(Patient.center).where(Patient.mrn == mrn)),
                sorted(s.scalars(select(ImplantedPump.center)
                                 .where(ImplantedPump.patient_mrn == mrn))),
                sorted(s.scalars(select(Appointment.center)
                                 .where(Appointment.patient_mrn == mrn))))


def _worklist(sched: Harness, headers: dict[str, str]) -> set[str]:
    r = sched.client.get("/v1/appointments", params={"status": "scheduled"}, headers=headers)
    assert r.status_code == 200, r.text
    return {a["patient_mrn"] for a in r.json()["items"]}


def _move(sched: Harness, mrn: str, headers: dict[str, str] = BOTH) -> Any:
    return sched.client.patch(f"/v1/patients/{mrn}", json={"center": SOUTH}, headers=headers)


def _paged(hook: WebhookReceiver, path: str) -> list[tuple[str, str | None]]:
    """(patient, centre) of each overdue page that reached `path`."""
    return [(p["alert"]["patient_mrn"], p["alert"]["center"]) for p in hook.on(path)
            if p["alert"]["kind"] == "refill_overdue"]


def test_a_transferred_patient_s_refill_and_its_overdue_page_go_to_the_new_centre(
        tmp_path: Path, fresh_vhost: str, pg_database: Callable[[str], str]) -> None:
    with the_system(tmp_path, fresh_vhost, pg_database) as (inv, sched, alerts, clock), \
            webhook() as hook:
        for center in (NORTH, SOUTH):
            r = alerts.client.put(f"/v1/oncall/{center}", headers=ADMIN, json={
                "escalation_delay_seconds": 900, "levels": [{"members": [
                    {"name": f"{center}-oncall", "channel": "webhook",
                     "address": hook.url_for(f"/{center}")}],
                    "rotation_start": "2026-11-01T08:00:00Z", "shift_hours": 12}]})
            assert r.status_code == 200, r.text
        # A is transferred once its refill is overdue (its alert raised at north), B before
        for mrn, serial in (("MRN-A", "SN-A"), ("MRN-B", "SN-B")):
            patient(sched, mrn, center=NORTH)
            _implanted(inv, sched, serial, mrn)
            therapy(sched, mrn, serial, start_on="2026-11-03", regimen="saline_maintenance")
        assert _worklist(sched, NORTH_NURSE) == {"MRN-A", "MRN-B"}

        # a token without the old centre: the patient does not exist for it, nothing moves
        before = _centres(sched, "MRN-A")
        r = _move(sched, "MRN-A", SOUTH_NURSE)
        assert r.status_code == 404, r.text
        assert r.json() == _move(sched, "NO-SUCH-MRN", SOUTH_NURSE).json()
        assert _centres(sched, "MRN-A") == before == (NORTH, [NORTH], [NORTH])

        assert _move(sched, "MRN-B").status_code == 200
        clock.advance(days=2)  # both refills overdue
        sweep(sched.runtime)

        def overdue_paged() -> bool:
            paging.sweep_once(alerts.runtime)
            return len(_paged(hook, "/north")) + len(_paged(hook, "/south")) >= 2

        wait_until(overdue_paged, what="both overdue refills paged", timeout_s=60)
        assert _paged(hook, "/north") == [("MRN-A", NORTH)]
        assert _paged(hook, "/south") == [("MRN-B", SOUTH)]  # the sweep's alert: new centre

        r = _move(sched, "MRN-A")
        assert r.status_code == 200, r.text
        assert _centres(sched, "MRN-A") == (SOUTH, [SOUTH], [SOUTH])
        assert _worklist(sched, SOUTH_NURSE) == {"MRN-A", "MRN-B"}
        assert _worklist(sched, NORTH_NURSE) == set()

        def a_paged_at_south() -> bool:
            paging.sweep_once(alerts.runtime)
            return ("MRN-A", SOUTH) in _paged(hook, "/south")

        wait_until(a_paged_at_south, what="A's overdue alert paged to south's on-call",
                   timeout_s=60)
        assert _paged(hook, "/north") == [("MRN-A", NORTH)]  # nothing more to the old centre
        seen = {a["patient_mrn"]: a["center"] for a in alerts.client.get(
            "/v1/alerts", params={"kind": "refill_overdue"}, headers=SOUTH_NURSE).json()["items"]}
        assert seen == {"MRN-A": SOUTH, "MRN-B": SOUTH}
        assert alerts.client.get("/v1/alerts", params={"kind": "refill_overdue"},
                                 headers=NORTH_NURSE).json()["items"] == []

        wait_until(lambda: {s: inv.client.get(f"/v1/pumps/{s}", headers=ADMIN).json()["center"]
                            for s in ("SN-A", "SN-B")} == {"SN-A": SOUTH, "SN-B": SOUTH},
                   what="inventory's implant records at south", timeout_s=30)
        # heard again (the consumers ran on their own): a sweep pages nothing more
        for _ in range(3):
            paging.sweep_once(alerts.runtime)
        assert len(_paged(hook, "/south")) == 2 and len(_paged(hook, "/north")) == 1
