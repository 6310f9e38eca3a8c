"""The clinical story through the HL7 v2 bridge: the services as processes on RabbitMQ and
PostgreSQL, `hai hl7-bridge` as a process of its own, and a pharmacy system written with hl7apy
over real sockets. A chemo therapy's order leaves on `pharmacy.orders`, reaches the pharmacy as
an RDE^O11, and the pharmacy's RRE^O12 (accepted) and RDS^O13 (dispensed) bring the delivery to
`dispatched` in scheduling, with the lot and its expiry."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests import services as svc
from tests.doubles import free_port
from tests.e2e.story import chemo_patient
from tests.e2e.topology import LOG_DIR, Proc, Topology, hai, topology
from tests.helpers import TRANSIENT, wait_until
from tests.integration.hl7_bridge import fake_pharmacy as fp

CENTER = "E2E-HL7"
SERIAL, MRN = "SN-E2E-HL7-1", "MRN-E2E-HL7-1"
GIVEN, FAMILY = "Hella", "Sevenson"


@pytest.fixture(scope="module")
def hl7_system(e2e_databases: Callable[[str], str]) -> Iterator[tuple[Topology, Proc, fp.FakePharmacy, int]]:
    """A topology of its own (its own vhost: the bridge takes every order of `pharmacy.orders`),
    one worker per service, the bridge process, and the fake pharmacy."""
    svc.need(svc.rabbitmq_available(), "RabbitMQ")
    vhost = f"hai-test-{svc.RUN_ID}-hl7"
    amqp = svc.create_vhost(vhost)
    pharmacy = fp.FakePharmacy()
    listen_port = free_port()
    dbs = {s: e2e_databases(f"hl7_{s}") for s in ("inventory", "scheduling", "alerts")}
    bridge_env = {
        "HAI_HL7_ENABLED": "true",
        "HAI_HL7_BRIDGE_DATABASE_URL": e2e_databases("hl7_bridge"),
        "HAI_HL7_PHARMACY_PORT": str(pharmacy.port),
        "HAI_HL7_LISTEN_PORT": str(listen_port),
        "HAI_HL7_RETRY_DELAY_MS": "500",
    }
    try:
        with topology(amqp, dbs, workers=1, extra_env=bridge_env, label="hl7") as topo:
            bridge = Proc("hl7_bridge", hai("hl7-bridge"), topo.env,
                          LOG_DIR / f"hl7-{datetime.now(UTC):%H%M%S}" / "hl7_bridge.log")
            topo.procs["hl7_bridge"] = bridge
            bridge.start()
            try:
                yield topo, bridge, pharmacy, listen_port
            finally:
                bridge.kill()
    finally:
        pharmacy.close()
        svc.delete_vhost(vhost)


def test_order_to_dispatched_through_the_hl7_bridge(
        hl7_system: tuple[Topology, Proc, fp.FakePharmacy, int]) -> None:
    system, bridge, pharmacy, listen_port = hl7_system
    now = datetime.now(UTC)
    chemo_patient(system, SERIAL, MRN, CENTER, given_name=GIVEN, family_name=FAMILY,
                  birth_date="1962-07-07", dexamethasone_mg=20)

    [rde] = wait_until(lambda: [
        o for o in pharmacy.orders() if o.mrn == MRN],
            what="the RDE^O11 at the pharmacy", timeout_s=60, ignoring=TRANSIENT)
    order_id = rde.order_id
    with system.client("scheduling", "nurse") as sch:
        delivery = sch.get(f"/v1/deliveries/{order_id}").json()
    assert delivery["status"] == "requested" and delivery["pump_serial"] == SERIAL
    fudr = next(d for d in delivery["drugs"] if d["code"] == "floxuridine")
    assert (rde.order_control, rde.give_code, rde.route) == ("NW", "FUDR", "IA")
    assert [c[1] for c in rde.components] == ["FUDR", "DEXA", "HEP", "NACL09"]
    assert float(rde.components[0][2]) == pytest.approx(fudr["amount"])

    accepted = fp.order_response(order_id, accepted=True, control_id="E2E-ACC-1", at=now)
    assert fp.ack_code(fp.send(listen_port, accepted)) == ("AA", "E2E-ACC-1")
    expiry = (now + timedelta(days=10)).strftime("%Y%m%d")
    dispensed = fp.dispense(order_id, control_id="E2E-RDS-1", at=now + timedelta(minutes=30),
                            lot="LOT-HL7-1", expiry=expiry)
    assert fp.ack_code(fp.send(listen_port, dispensed)) == ("AA", "E2E-RDS-1")

    with system.client("scheduling", "nurse") as sch:
        delivery = wait_until(lambda: (
            lambda d: d if d["status"] == "dispatched" else None)(
            sch.get(f"/v1/deliveries/{order_id}").json()),
                what="scheduling to see the order dispatched", timeout_s=60, ignoring=TRANSIENT)
    assert delivery["lot"] == "LOT-HL7-1"
    assert delivery["beyond_use_at"].startswith((now + timedelta(days=10)).date().isoformat())
    assert [(h["status"], h["applied"]) for h in delivery["history"]] == [
        ("requested", True), ("accepted", True), ("dispatched", True)]

    # the bridge logged what it did, by ids, and nothing of the patient
    log = wait_until(lambda: (
        lambda text: text if "E2E-RDS-1" in text else None)(bridge.log_path.read_text()),
            what="the bridge's log of the answers", timeout_s=30, ignoring=TRANSIENT)
    assert order_id in log
    for secret in (MRN, GIVEN, FAMILY, "1962-07-07", "19620707"):
        assert secret not in log, f"{secret!r} in the bridge's log"
    for line in log.splitlines():
        json.loads(line)
