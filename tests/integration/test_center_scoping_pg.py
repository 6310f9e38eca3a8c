"""Centre scoping, service by service, on PostgreSQL (CONTRACT.md, HTTP conventions; issue 22):
what a token of one centre may see and do with the records of another, and with the records of
no centre (consortium stock, system alerts). tests/security/test_center_scoping_pg.py walks
every route; these name the decisions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from shared.events import EventType
from tests import helpers
from tests.factories import (
    T0,
    flow_recorded,
    flow_trend,
    lot_flow_drift,
    oncall_body,
    pump_implanted,
)
from tests.helpers import Harness, auth, emit, test_settings
from tests.security.stories import patient_body, pump_body, therapy_ready

SERVICES = ["inventory", "scheduling", "alerts"]
NORTH = auth("admin", sub="north-admin", centers=["north"])
SOUTH = auth("admin", sub="south-admin", centers=["south"])
SOUTH_BIOMED = auth("biomed", sub="south-biomed", centers=["south"])
BOTH = auth("nurse", sub="two-centres", centers=["north", "south"])
EVERY = auth("admin", sub="consortium", centers=["*"])


@pytest.fixture
def settings(tmp_path: Any, pg_database: Callable[[str], str]) -> Iterator[Any]:
    yield test_settings(tmp_path, **{f"{s}_database_url": pg_database(s) for s in SERVICES})


def _count(harness: Harness, table: str) -> int:
    with harness.runtime.engine.connect() as conn:
        t = harness.runtime.metadata.tables[table]
        return int(conn.execute(select(func.count()).select_from(t)).scalar_one())


def _implant(harness: Harness, serial: str, mrn: str, center: str, headers: dict[str, str]) -> Any:
    return harness.client.post(f"/v1/pumps/{serial}/implant", headers=headers, json={
        "patient_mrn": mrn, "implanted_at": (T0 - timedelta(days=1)).isoformat(), "center": center})


# ------------------------------------------------------------------------------- inventory

def _report_centres(answer: Any) -> set[str]:
    return {r["center"] for r in answer.json()["rows"]}


def test_the_pump_registry_shows_the_callers_centres_beside_the_whole_consortium(
        settings: Any) -> None:
    harness, _ = helpers.start("inventory", settings)
    c = harness.client
    for serial, center in (("SN-RN", "north"), ("SN-RS", "south"), ("SN-RSTOCK", None)):
        assert c.post("/v1/pumps", json=pump_body(serial), headers=EVERY).status_code == 201
        if center:
            assert _implant(harness, serial, f"MRN-{serial}", center, EVERY).status_code == 200
    every = c.get("/v1/reports/pumps", headers=EVERY).json()["rows"]
    south = c.get("/v1/reports/pumps", headers=SOUTH)
    assert _report_centres(south) == {"south", "(none)", "*"}
    consortium = [r for r in south.json()["rows"] if r["center"] == "*"]
    assert consortium == [r for r in every if r["center"] == "*"]  # every centre's sum
    assert {"status": "implanted", "pumps": 2, "center": "*"} in consortium
    # naming north: nothing, not even the consortium beside it (as a centre that does not exist)
    for path in ("/v1/reports/pumps", "/v1/reports/explants"):
        named = c.get(path, params={"center": "north"}, headers=SOUTH)
        unknown = c.get(path, params={"center": "nowhere"}, headers=SOUTH)
        assert named.status_code == 200 and named.json()["rows"] == unknown.json()["rows"] == []
    csv = c.get("/v1/reports/pumps", params={"format": "csv"}, headers=SOUTH)
    assert csv.status_code == 200 and "north" not in csv.text and "south" in csv.text



def test_stock_is_every_centres_and_an_implanted_pump_its_centres_alone(settings: Any) -> None:
    harness, _ = helpers.start("inventory", settings)
    c = harness.client
    for serial in ("SN-N", "SN-STOCK"):
        assert c.post("/v1/pumps", json=pump_body(serial), headers=EVERY).status_code == 201
    # south's biomed sees the consortium's stock, and may not implant into north
    assert c.get("/v1/pumps/SN-N", headers=SOUTH_BIOMED).status_code == 200
    refused = _implant(harness, "SN-N", "MRN-N", "north", SOUTH_BIOMED)
    assert refused.status_code == 403 and "north" in refused.json()["detail"]
    assert c.get("/v1/pumps/SN-N", headers=EVERY).json()["status"] == "in_stock"
    assert _implant(harness, "SN-N", "MRN-N", "north", NORTH).status_code == 200
    # implanted at north: gone for south, as a serial that never existed is
    hidden, missing = (c.get(f"/v1/pumps/{s}", headers=SOUTH) for s in ("SN-N", "SN-NONE"))
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["detail"].replace("SN-N", "X") == missing.json()["detail"].replace(
        "SN-NONE", "X")
    assert [p["serial_number"] for p in c.get("/v1/pumps", headers=SOUTH).json()["items"]] \
        == ["SN-STOCK"]
    assert c.get("/v1/pumps", params={"patient_mrn": "MRN-N"}, headers=SOUTH).json()["items"] == []
    assert c.get("/v1/pumps/SN-N/history", headers=SOUTH).status_code == 404
    # a write on it finds nothing either, and changes nothing
    history = _count(harness, "device_history")
    assert c.post("/v1/pumps/SN-N/explant", json={"reason": "x"}, headers=SOUTH).status_code == 404
    assert _count(harness, "device_history") == history
    assert c.get("/v1/pumps/SN-N", headers=NORTH).json()["status"] == "implanted"
    assert c.get("/fhir/R4/Device/SN-N", headers=SOUTH).status_code == 404
    assert c.get("/fhir/R4/Device/SN-N", headers=NORTH).status_code == 200


# ------------------------------------------------------------------------------ scheduling

def test_a_patient_is_created_moved_and_read_only_within_the_tokens_centres(settings: Any) -> None:
    harness, bus = helpers.start("scheduling", settings)
    c = harness.client
    created = c.post("/v1/patients", json=patient_body("MRN-N"), headers=SOUTH)  # centre north
    assert created.status_code == 403 and "north" in created.json()["detail"]
    assert _count(harness, "patients") == 0
    assert c.post("/v1/patients", json=patient_body("MRN-N"), headers=NORTH).status_code == 201
    assert c.get("/v1/patients/MRN-N", headers=SOUTH).status_code == 404
    assert c.get("/fhir/R4/Patient/MRN-N", headers=SOUTH).status_code == 404
    assert c.patch("/v1/patients/MRN-N", json={"weight_kg": 60}, headers=SOUTH).status_code == 404
    moved = c.patch("/v1/patients/MRN-N", json={"center": "south"}, headers=NORTH)
    assert moved.status_code == 403  # north cannot hand a patient to a centre it does not cover
    assert c.patch("/v1/patients/MRN-N", json={"center": "south"}, headers=BOTH).status_code == 200
    assert c.get("/v1/patients/MRN-N", headers=NORTH).status_code == 404
    assert c.get("/v1/patients/MRN-N", headers=SOUTH).json()["center"] == "south"
    # a key taken in another centre is a plain 409, naming nothing of the record
    clash = c.post("/v1/patients", json=patient_body("MRN-N"), headers=NORTH)
    assert clash.status_code == 409 and "south" not in clash.text and "Ada" not in clash.text
    del bus


def test_the_worklist_of_a_centre_lists_only_its_appointments(settings: Any) -> None:
    harness, bus = helpers.start("scheduling", settings)
    c = harness.client
    for mrn, serial, center in (("MRN-N", "SN-N", "north"), ("MRN-S", "SN-S", "south")):
        body = {**patient_body(mrn), "center": center}
        assert c.post("/v1/patients", json=body, headers=EVERY).status_code == 201
        emit(harness, bus, EventType.PUMP_IMPLANTED, pump_implanted(serial, mrn, center=center))
        therapy = {"patient_mrn": mrn, "pump_serial": serial, "regimen": "saline_maintenance",
                   "start_on": (T0 + timedelta(days=3)).date().isoformat()}
        assert c.post("/v1/therapies", json=therapy, headers=EVERY).status_code == 201

    def worklist(headers: dict[str, str], **params: str) -> list[str]:
        items = c.get("/v1/appointments", params=params, headers=headers).json()["items"]
        return sorted(a["patient_mrn"] for a in items)

    assert worklist(SOUTH) == ["MRN-S"]
    assert worklist(SOUTH, center="north") == []
    assert worklist(BOTH) == ["MRN-N", "MRN-S"]
    assert worklist(EVERY) == ["MRN-N", "MRN-S"]
    # a therapy for north's pump, asked by south: as for a pump scheduling never saw
    north_therapy = {"patient_mrn": "MRN-N", "pump_serial": "SN-N", "regimen": "saline_maintenance",
                     "start_on": T0.date().isoformat()}
    unseen = {**north_therapy, "patient_mrn": "MRN-NONE", "pump_serial": "SN-NONE"}
    r1, r2 = (c.post("/v1/therapies", json=b, headers=SOUTH) for b in (north_therapy, unseen))
    assert (r1.status_code, r1.text) == (r2.status_code, r2.text) and r1.status_code >= 400


def test_centre_settings_of_another_centre_are_hidden_and_not_writable(settings: Any) -> None:
    harness, _ = helpers.start("scheduling", settings)
    c = harness.client
    set_north = c.put("/v1/centers/north/settings", json={"due_soon_hours": 36}, headers=NORTH)
    assert set_north.status_code == 200, set_north.text
    for path in ("/v1/centers/{c}/settings", "/v1/centers/{c}/settings/history"):
        hidden = c.get(path.format(c="north"), headers=SOUTH)
        missing = c.get(path.format(c="nowhere"), headers=SOUTH)
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["detail"].replace("north", "nowhere") == missing.json()["detail"]
        assert c.get(path.format(c="south"), headers=SOUTH).status_code == 200
        assert c.get(path.format(c="north"), headers=EVERY).status_code == 200
    audits = _count(harness, "audit_log")
    refused = c.put("/v1/centers/north/settings", json={"due_soon_hours": 12}, headers=SOUTH)
    assert refused.status_code == 403 and "north" in refused.json()["detail"]
    north = c.get("/v1/centers/north/settings", headers=NORTH).json()
    assert north["version"] == 1 and north["settings"]["due_soon_hours"]["value"] == 36
    assert _count(harness, "audit_log") == audits


def test_the_refill_registry_is_the_consortiums_whoever_computes_it_first(settings: Any) -> None:
    harness, bus = helpers.start("scheduling", settings)

    def call(method: str, _template: str, path: str, body: Any) -> Any:
        r = harness.client.request(method, path, json=body, headers=EVERY)
        assert r.status_code in (200, 201), r.text
        return r.json()

    therapy_ready(harness, bus, call)  # north's patient: its first delivery is ordered
    # south asks first: the snapshot it leaves must still hold north's figures for the others
    south = harness.client.get("/v1/reports/refills", headers=SOUTH)
    assert south.status_code == 200 and _report_centres(south) == {"*"}
    every = harness.client.get("/v1/reports/refills", headers=EVERY).json()["rows"]
    assert {r["center"] for r in every} == {"north", "*"}
    assert [r for r in every if r["center"] == "*"] == south.json()["rows"]
    assert sum(r["deliveries"] for r in every if r["center"] == "north") >= 1
    named = harness.client.get("/v1/reports/refills", params={"center": "north"}, headers=SOUTH)
    assert named.status_code == 200 and named.json()["rows"] == []
    csv = harness.client.get("/v1/reports/refills", params={"format": "csv"}, headers=SOUTH)
    assert csv.status_code == 200 and "north" not in csv.text


# ---------------------------------------------------------------------------------- alerts

def test_alerts_on_call_and_silences_stay_within_their_centre(settings: Any) -> None:
    harness, bus = helpers.start("alerts", settings)
    c = harness.client
    log = oncall_body([("ann", "log", "ann")])
    assert c.put("/v1/oncall/north", json=log, headers=SOUTH).status_code == 403
    assert c.put("/v1/oncall/default", json=log, headers=SOUTH).status_code == 403
    assert _count(harness, "oncall_schedules") == 0
    assert c.put("/v1/oncall/north", json=log, headers=NORTH).status_code == 200
    assert c.get("/v1/oncall/north/now", headers=SOUTH).status_code == 404
    emit(harness, bus, EventType.FLOW_RECORDED, flow_recorded("SN-N", mrn="MRN-N", center="north"))
    [alert] = c.get("/v1/alerts", headers=NORTH).json()["items"]
    assert c.get("/v1/alerts", headers=SOUTH).json()["items"] == []
    assert c.post(f"/v1/alerts/{alert['id']}/ack", json={}, headers=SOUTH).status_code == 404
    assert c.get(f"/v1/alerts/{alert['id']}", headers=NORTH).json()["status"] == "firing"
    assert not c.get("/fhir/R4/Flag", headers=SOUTH).json().get("entry")
    # a silence reaches only the centres of its author's token
    window = {"starts_at": T0.isoformat(), "ends_at": (T0 + timedelta(hours=1)).isoformat(),
              "reason": "study"}
    everywhere = c.post("/v1/silences", json={"matchers": {"kind": "flow_abnormal"}, **window},
                        headers=SOUTH)
    assert everywhere.status_code == 403 and "matchers.center" in everywhere.json()["detail"]
    mine = {"matchers": {"kind": "flow_abnormal", "center": "south"}, **window}
    assert c.post("/v1/silences", json=mine, headers=SOUTH).status_code == 201
    assert c.get("/v1/silences", headers=NORTH).json()["items"] == []
    # the audit trail spans every centre
    assert c.get("/v1/audit", headers=SOUTH).status_code == 403
    assert c.get("/v1/audit", headers=EVERY).status_code == 200


def test_a_system_alert_of_no_centre_is_seen_by_every_centre(settings: Any) -> None:
    from services.alerts.rules import system_stale
    from services.alerts.service import raise_alert

    harness, _ = helpers.start("alerts", settings)
    with harness.runtime.uow_factory.begin() as uow:
        raise_alert(uow, system_stale(last_heard_at=T0 - timedelta(hours=1), now=T0),
                    settings=harness.runtime.settings)
    for headers in (NORTH, SOUTH):
        [alert] = harness.client.get("/v1/alerts", headers=headers).json()["items"]
        assert alert["kind"] == "system_stale" and alert["center"] is None


def test_a_lots_flow_drift_is_seen_by_biomed_and_every_centre_never_by_a_scoped_nurse(
        settings: Any) -> None:
    harness, bus = helpers.start("alerts", settings)
    c = harness.client
    emit(harness, bus, EventType.LOT_FLOW_DRIFT, lot_flow_drift("LOT-7"))
    emit(harness, bus, EventType.FLOW_TREND, flow_trend(center="north"))
    kinds = {a["kind"]: a for a in c.get("/v1/alerts", headers=EVERY).json()["items"]}
    assert set(kinds) == {"lot_flow_drift", "flow_trend"}, kinds
    drift = kinds["lot_flow_drift"]["id"]
    south_nurse = auth("nurse", sub="south-nurse", centers=["south"])
    assert c.get("/v1/alerts", headers=south_nurse).json()["items"] == []
    for path in ("/v1/alerts/{a}", "/v1/alerts/{a}/timeline"):
        hidden = c.get(path.format(a=drift), headers=south_nurse)
        missing = c.get(path.format(a="nope"), headers=south_nurse)
        assert hidden.status_code == missing.status_code == 404
        assert hidden.text.replace(drift, "nope") == missing.text
    # biomed (and admin) of one centre see the lot, not north's pump trend
    for headers in (SOUTH_BIOMED, SOUTH):
        seen = c.get("/v1/alerts", headers=headers).json()["items"]
        assert [a["kind"] for a in seen] == ["lot_flow_drift"]
        assert c.get(f"/v1/alerts/{drift}", headers=headers).status_code == 200
    trend = kinds["flow_trend"]["id"]
    assert c.get(f"/v1/alerts/{trend}", headers=SOUTH).status_code == 404
    snooze = c.post(f"/v1/alerts/{trend}/snooze", headers=SOUTH,
                    json={"until": (T0 + timedelta(hours=1)).isoformat(), "reason": "later"})
    assert snooze.status_code == 404
    assert c.get(f"/v1/alerts/{trend}", headers=NORTH).json()["status"] == "firing"  # not snoozed


# ----------------------------------------------------------------------- the missing claim

def test_a_token_without_the_claim_is_403_where_the_setting_requires_it(
        tmp_path: Any, pg_database: Callable[[str], str]) -> None:
    strict = test_settings(tmp_path, inventory_database_url=pg_database("inventory"),
                           centers_claim_required=True)
    harness, _ = helpers.start("inventory", strict)
    bare = harness.client.get("/v1/pumps", headers=auth("service", sub="old-client"))
    assert bare.status_code == 403 and "centers" in bare.json()["detail"]
    assert harness.client.get("/fhir/R4/Device", headers=auth("nurse")).status_code == 403
    assert harness.client.get("/v1/pumps", headers=EVERY).status_code == 200
