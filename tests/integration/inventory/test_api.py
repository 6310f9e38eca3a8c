"""Inventory's HTTP API on PostgreSQL, to CONTRACT.md (Inventory, HTTP conventions)."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from services.inventory.udi import GS
from shared.messaging.base import QueueSpec
from shared.messaging.inproc import InProcessBus
from shared.messaging.relay import OutboxRelay
from tests.factories import T0
from tests.helpers import Harness, auth

BIOMED = auth("biomed", sub="bea-biomed")
ONCO = auth("oncologist", sub="olga-onc")
ADMIN = auth("admin", sub="ada-admin")
NURSE = auth("nurse")
PUMP_FIELDS = {"serial_number", "model_code", "gtin", "lot_number", "expiry_date", "reservoir_ml",
               "labeled_flow_ml_per_day", "status", "location", "patient_mrn", "implanted_at",
               "explanted_at", "created_at", "updated_at"}
_n = itertools.count(1)


def serial() -> str:
    return f"API{next(_n):05d}-{uuid.uuid4().hex[:6]}"


def register(inv: Harness, **overrides: Any) -> dict[str, Any]:
    body = {"serial_number": serial(), "model_code": "DEMO-INTERA-3000", "lot_number": "L-API",
            "expiry_date": "2028-12-31", **overrides}
    r = inv.client.post("/v1/pumps", json=body, headers=BIOMED)
    assert r.status_code == 201, r.text
    return dict(r.json())


def implant(inv: Harness, sn: str, mrn: str, **overrides: Any) -> Any:
    body = {"patient_mrn": mrn, "implanted_at": (T0 - timedelta(days=2)).isoformat(),
            "center": "CTR-A", "surgeon": "Dr Who", **overrides}
    return inv.client.post(f"/v1/pumps/{sn}/implant", json=body, headers=ONCO)


def assert_problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["detail"]
    return dict(body)


# --- catalogue -------------------------------------------------------------------------------

def test_pump_models_are_seeded_with_demo_entries(inventory: Harness) -> None:
    r = inventory.client.get("/v1/pump-models", headers=NURSE)
    assert r.status_code == 200
    items = r.json()["items"]
    names = {m["name"] for m in items}
    assert {"DEMO Intera 3000", "DEMO Codman 3000", "DEMO SynchroMed II"} <= names
    assert r.json()["next_cursor"] is None
    intera = next(m for m in items if m["code"] == "DEMO-INTERA-3000")
    assert {k: intera[k] for k in ("gtin", "reservoir_ml", "nominal_flow_ml_per_day")} == {
        "gtin": "00812345000016", "reservoir_ml": 30.0, "nominal_flow_ml_per_day": 1.0}


def test_only_admin_adds_a_pump_model_and_the_key_replays(inventory: Harness) -> None:
    body = {"code": "ACME-1", "manufacturer": "Acme", "name": "Acme 1", "gtin": "00812345000047",
            "reservoir_ml": 30, "nominal_flow_ml_per_day": 0.9}
    assert_problem(inventory.client.post("/v1/pump-models", json=body, headers=BIOMED), 403)
    key = {"Idempotency-Key": "model-acme-1"}
    first = inventory.client.post("/v1/pump-models", json=body, headers={**ADMIN, **key})
    assert first.status_code == 201 and first.json()["code"] == "ACME-1"
    again = inventory.client.post("/v1/pump-models", json=body, headers={**ADMIN, **key})
    assert again.status_code == 201 and again.json() == first.json()
    other = inventory.client.post("/v1/pump-models", json={**body, "name": "x"},
                                  headers={**ADMIN, **key})
    assert_problem(other, 409)
    assert_problem(inventory.client.post("/v1/pump-models", json=body, headers=ADMIN), 409)
    bad = inventory.client.post("/v1/pump-models", headers=ADMIN,
                                json={**body, "code": "ACME-2", "gtin": "00812345000048"})
    assert assert_problem(bad, 422)["errors"][0]["field"] == "gtin"


# --- registration ----------------------------------------------------------------------------

def test_register_from_the_contract_example_udi(inventory: Harness) -> None:
    sn = serial()
    r = inventory.client.post("/v1/pumps", headers=BIOMED, json={
        "udi": f"(01)00812345000016(17)281231(10)LOT42(21){sn}", "location": "cabinet B"})
    assert r.status_code == 201, r.text
    pump = r.json()
    assert PUMP_FIELDS <= set(pump)
    assert pump == pump | {"serial_number": sn, "model_code": "DEMO-INTERA-3000",
                           "gtin": "00812345000016", "lot_number": "LOT42",
                           "expiry_date": "2028-12-31", "reservoir_ml": 30.0,
                           "labeled_flow_ml_per_day": 1.0, "status": "in_stock",
                           "location": "cabinet B", "patient_mrn": None}
    assert pump["created_at"].endswith("Z")  # CONTRACT.md: UTC ISO-8601 as `…Z`
    assert inventory.client.get(f"/v1/pumps/{sn}", headers=NURSE).json() == pump


def test_register_from_the_scanner_raw_form_with_its_own_flow(inventory: Harness) -> None:
    sn = serial()
    raw = f"]d20100812345000030172906301" f"0LOT-R{GS}21{sn}"
    r = inventory.client.post("/v1/pumps", headers=BIOMED,
                              json={"udi": raw, "labeled_flow_ml_per_day": 1.08})
    assert r.status_code == 201, r.text
    assert (r.json()["model_code"], r.json()["lot_number"], r.json()["labeled_flow_ml_per_day"]) == (
        "DEMO-SYNCHROMED-II", "LOT-R", 1.08)


def test_a_known_serial_is_a_conflict(inventory: Harness) -> None:
    pump = register(inventory)
    r = inventory.client.post("/v1/pumps", headers=BIOMED, json={
        "udi": f"(01)00812345000016(17)281231(10)L(21){pump['serial_number']}"})
    assert "in_stock" in assert_problem(r, 409)["detail"]


@pytest.mark.parametrize(("udi", "field"), [
    ("(01)00812345000017(17)281231(10)L(21)BADCHECK", "udi.gtin"),
    ("(01)00812345000054(17)281231(10)L(21)UNKNOWN", "udi.gtin"),
    ("(01)00812345000016(17)281231(10)L", "udi.serial_number"),
    ("(01)00812345000016(10)L(21)NOEXP", "udi.expiry_date"),
    ("(01)00812345000016(17)281340(21)BADDATE", "udi.expiry_date"),
    ("not a udi", "udi"),
])
def test_a_bad_udi_is_422_naming_what_is_wrong(inventory: Harness, udi: str, field: str) -> None:
    body = assert_problem(inventory.client.post("/v1/pumps", json={"udi": udi}, headers=BIOMED), 422)
    assert field in [e["field"] for e in body["errors"]]


@pytest.mark.parametrize(("body", "field"), [
    ({"serial_number": "F1", "lot_number": "L", "expiry_date": "2028-01-01"}, "model_code"),
    ({"serial_number": "F2", "model_code": "NOPE", "lot_number": "L", "expiry_date": "2028-01-01"},
     "model_code"),
    ({"serial_number": "F3", "model_code": "DEMO-INTERA-3000", "lot_number": "L",
      "expiry_date": "2028-02-30"}, "expiry_date"),
    ({"serial_number": "F4", "model_code": "DEMO-INTERA-3000", "lot_number": "L",
      "expiry_date": "2028-01-01", "labeled_flow_ml_per_day": -1}, "labeled_flow_ml_per_day"),
    ({"serial_number": "a/b", "model_code": "DEMO-INTERA-3000", "lot_number": "L",
      "expiry_date": "2028-01-01"}, "serial_number"),
    ({}, "serial_number"),
])
def test_bad_fields_are_422_naming_the_field(inventory: Harness, body: dict[str, Any],
                                             field: str) -> None:
    problem = assert_problem(inventory.client.post("/v1/pumps", json=body, headers=BIOMED), 422)
    assert field in [e["field"] for e in problem["errors"]]


def test_idempotency_key_on_registration(inventory: Harness) -> None:
    body = {"serial_number": serial(), "model_code": "DEMO-CODMAN-3000", "lot_number": "L",
            "expiry_date": "2029-01-01"}
    headers = {**BIOMED, "Idempotency-Key": uuid.uuid4().hex}
    first = inventory.client.post("/v1/pumps", json=body, headers=headers)
    again = inventory.client.post("/v1/pumps", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json() and again.headers.get("Idempotent-Replayed") == "true"
    history = inventory.client.get(f"/v1/pumps/{body['serial_number']}/history", headers=NURSE)
    assert len(history.json()["items"]) == 1  # created once


# --- lifecycle -------------------------------------------------------------------------------

def test_implant_explant_and_the_device_history(inventory: Harness) -> None:
    sn = register(inventory)["serial_number"]
    mrn = f"MRN-{uuid.uuid4().hex[:8]}"
    r = implant(inventory, sn, mrn)
    assert r.status_code == 200, r.text
    assert r.json() | {"status": "implanted", "patient_mrn": mrn, "center": "CTR-A"} == r.json()
    assert r.json()["implanted_at"].startswith((T0 - timedelta(days=2)).date().isoformat())
    r = inventory.client.post(f"/v1/pumps/{sn}/explant", headers=BIOMED,
                              json={"explanted_at": T0.isoformat(), "reason": "catheter occlusion"})
    assert r.status_code == 200 and r.json()["status"] == "explanted"
    r = inventory.client.post(f"/v1/pumps/{sn}/retire", headers=BIOMED, json={"reason": "used"})
    assert r.status_code == 200 and r.json()["status"] == "retired"
    history = inventory.client.get(f"/v1/pumps/{sn}/history", headers=NURSE).json()
    assert history["next_cursor"] is None
    rows = history["items"]
    assert [set(row) for row in rows] == [{"at", "actor", "action", "from_status", "to_status",
                                          "details"}] * 4
    assert [(h["action"], h["from_status"], h["to_status"], h["actor"]) for h in rows] == [
        ("register", None, "in_stock", "bea-biomed"),
        ("implant", "in_stock", "implanted", "olga-onc"),
        ("explant", "implanted", "explanted", "bea-biomed"),
        ("retire", "explanted", "retired", "bea-biomed")]
    assert rows[2]["details"]["reason"] == "catheter occlusion"
    page = inventory.client.get(f"/v1/pumps/{sn}/history?limit=3", headers=NURSE).json()
    rest = inventory.client.get(f"/v1/pumps/{sn}/history?cursor={page['next_cursor']}",
                                headers=NURSE).json()
    assert page["items"] + rest["items"] == rows


def test_every_write_is_audited_with_its_actor(inventory: Harness) -> None:
    sn = register(inventory)["serial_number"]
    implant(inventory, sn, f"MRN-{uuid.uuid4().hex[:8]}")
    audit = inventory.runtime.platform.audit
    with inventory.runtime.uow_factory() as uow:
        rows = uow.session.execute(select(audit.c.actor, audit.c.action).where(
            audit.c.entity_id == sn).order_by(audit.c.id)).all()
    assert [tuple(r) for r in rows] == [("bea-biomed", "pump.register"), ("olga-onc", "pump.implant")]


def test_implant_of_a_quarantined_pump_names_its_status(inventory: Harness) -> None:
    sn = register(inventory)["serial_number"]
    inventory.client.post(f"/v1/pumps/{sn}/quarantine", json={"reason": "drop"}, headers=BIOMED)
    body = assert_problem(implant(inventory, sn, "MRN-Q"), 409)
    assert "quarantined" in body["detail"] and body["current_status"] == "quarantined"
    assert inventory.client.get(f"/v1/pumps/{sn}", headers=NURSE).json()["status"] == "quarantined"
    r = inventory.client.post(f"/v1/pumps/{sn}/release", headers=BIOMED)
    assert r.status_code == 200 and r.json()["status"] == "in_stock"


def test_implant_refusals(inventory: Harness) -> None:
    # expired before the implant (implant() implants two days before T0)
    expired = register(inventory, expiry_date=(T0 - timedelta(days=10)).date().isoformat())[
        "serial_number"]
    assert "expired" in assert_problem(implant(inventory, expired, "MRN-E1"), 409)["detail"]
    future = (T0 + timedelta(hours=1)).isoformat()
    sn = register(inventory)["serial_number"]
    body = assert_problem(implant(inventory, sn, "MRN-E2", implanted_at=future), 422)
    assert body["errors"][0]["field"] == "implanted_at"
    naive = assert_problem(implant(inventory, sn, "MRN-E2", implanted_at="2026-11-01T10:00:00"), 422)
    assert naive["errors"][0]["field"] == "implanted_at"
    mrn = f"MRN-{uuid.uuid4().hex[:8]}"
    assert implant(inventory, sn, mrn).status_code == 200
    other = register(inventory)["serial_number"]
    assert sn in assert_problem(implant(inventory, other, mrn), 409)["detail"]
    assert "implanted" in assert_problem(implant(inventory, sn, "MRN-X"), 409)["detail"]


@pytest.mark.parametrize(("path", "body"), [
    ("explant", {"explanted_at": T0.isoformat(), "reason": "r"}),
    ("release", None),
])
def test_moves_not_allowed_from_stock_are_409(inventory: Harness, path: str,
                                              body: dict[str, Any] | None) -> None:
    sn = register(inventory)["serial_number"]
    r = inventory.client.post(f"/v1/pumps/{sn}/{path}", json=body, headers=BIOMED)
    assert "in_stock" in assert_problem(r, 409)["detail"]


def test_unknown_pump_and_missing_token(inventory: Harness) -> None:
    assert_problem(inventory.client.get("/v1/pumps/NOPE-404", headers=NURSE), 404)
    assert_problem(inventory.client.get("/v1/pumps/NOPE-404/history", headers=NURSE), 404)
    assert_problem(inventory.client.post("/v1/pumps/NOPE-404/retire", json={"reason": "x"},
                                         headers=BIOMED), 404)
    assert_problem(inventory.client.get("/v1/pumps"), 401)
    assert_problem(inventory.client.get("/v1/pumps", headers={"Authorization": "Bearer x"}), 401)


# --- lists -----------------------------------------------------------------------------------

def test_list_filters_and_cursor_pages(inventory: Harness) -> None:
    lot = f"LOT-{uuid.uuid4().hex[:6]}"
    made = sorted(register(inventory, lot_number=lot, model_code="DEMO-CODMAN-3000",
                           expiry_date=f"2027-03-{d:02d}")["serial_number"] for d in range(1, 8))
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"lot_number": lot, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = inventory.client.get("/v1/pumps", params=params, headers=NURSE).json()
        seen += [p["serial_number"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made
    expiring = inventory.client.get("/v1/pumps", headers=NURSE, params={
        "lot_number": lot, "expiring_before": "2027-03-04", "status": "in_stock",
        "model_code": "DEMO-CODMAN-3000"}).json()["items"]
    assert len(expiring) == 3
    mrn = f"MRN-{uuid.uuid4().hex[:8]}"
    implant(inventory, made[0], mrn)
    by_patient = inventory.client.get("/v1/pumps", params={"patient_mrn": mrn}, headers=NURSE)
    assert [p["serial_number"] for p in by_patient.json()["items"]] == [made[0]]
    for bad in ({"status": "lost"}, {"limit": 501}, {"limit": 0}, {"cursor": "!!"},
                {"expiring_before": "2027-13-01"}):
        assert_problem(inventory.client.get("/v1/pumps", params=bad, headers=NURSE), 422)


# --- recalls ---------------------------------------------------------------------------------

def test_recall_quarantines_stock_and_names_implants(inventory: Harness) -> None:
    lot = f"RC-{uuid.uuid4().hex[:6]}"
    stock = sorted(register(inventory, lot_number=lot)["serial_number"] for _ in range(3))
    implanted = register(inventory, lot_number=lot)["serial_number"]
    mrn = f"MRN-{uuid.uuid4().hex[:8]}"
    implant(inventory, implanted, mrn)
    body = {"model_code": "DEMO-INTERA-3000", "lot_numbers": [lot], "reason": "fast flow"}
    assert_problem(inventory.client.post("/v1/recalls", json=body, headers=ONCO), 403)
    r = inventory.client.post("/v1/recalls", json=body, headers=BIOMED)
    assert r.status_code == 201, r.text
    recall = r.json()
    assert recall["quarantined"] == stock
    assert recall["implanted"] == [{"serial_number": implanted, "patient_mrn": mrn,
                                    "center": "CTR-A"}]
    assert recall["recall_id"]
    for sn in stock:
        assert inventory.client.get(f"/v1/pumps/{sn}", headers=NURSE).json()["status"] == "quarantined"
    assert inventory.client.get(f"/v1/recalls/{recall['recall_id']}", headers=NURSE).json() == recall
    listed = inventory.client.get("/v1/recalls", headers=NURSE).json()["items"]
    assert recall["recall_id"] in [x["recall_id"] for x in listed]
    assert_problem(inventory.client.get("/v1/recalls/nope", headers=NURSE), 404)
    bad = inventory.client.post("/v1/recalls", headers=BIOMED, json={**body, "lot_numbers": []})
    assert_problem(bad, 422)


# --- events (in-process bus; see test_events_rabbitmq.py for RabbitMQ) ------------------------

def test_every_move_is_announced_through_the_outbox(inventory: Harness) -> None:
    bus = InProcessBus()
    queue = QueueSpec("observer", bindings=(("hai.events", "hai.inventory.#"),))
    bus.declare([queue])
    relay = OutboxRelay(inventory.runtime.uow_factory, lambda: bus)
    while relay.run_once():
        pass
    bus.take("observer")  # what earlier tests left
    sn = register(inventory, lot_number="EVT")["serial_number"]
    mrn = f"MRN-{uuid.uuid4().hex[:8]}"
    implant(inventory, sn, mrn)
    inventory.client.post(f"/v1/pumps/{sn}/explant", headers=ONCO,
                          json={"explanted_at": T0.isoformat(), "reason": "infection"})
    inventory.client.post(f"/v1/pumps/{sn}/retire", headers=BIOMED, json={"reason": "done"})
    while relay.run_once():
        pass
    events = [json.loads(d.body) for d in bus.take("observer")]
    mine = [e for e in events if e.get("subject") == sn]
    assert [e["type"] for e in mine] == [
        "hai.inventory.pump.registered", "hai.inventory.pump.implanted",
        "hai.inventory.pump.explanted", "hai.inventory.pump.status_changed"]
    assert all(e["specversion"] == "1.0" and e["source"] == "/hai/inventory" for e in mine)
    assert mine[1]["data"] | {"patient_mrn": mrn, "center": "CTR-A", "reservoir_ml": 30.0,
                              "labeled_flow_ml_per_day": 1.0} == mine[1]["data"]
    assert mine[2]["data"] | {"serial_number": sn, "patient_mrn": mrn,
                              "reason": "infection"} == mine[2]["data"]
    assert mine[3]["data"] == {"serial_number": sn, "from_status": "explanted",
                               "to_status": "retired", "reason": "done", "recall_id": None,
                               "center": "CTR-A"}  # an explanted pump keeps its centre
    refused = implant(inventory, sn, mrn)
    assert refused.status_code == 409
    while relay.run_once():
        pass
    assert bus.take("observer") == []  # a refused move announces nothing


# --- roles -----------------------------------------------------------------------------------

ROLES = ("nurse", "pharmacist", "oncologist", "biomed", "oncall", "admin", "service")
ROUTES: list[tuple[str, str, dict[str, Any] | None, set[str]]] = [
    ("GET", "/v1/pump-models", None, set(ROLES)),
    ("POST", "/v1/pump-models", {"code": "RM", "manufacturer": "M", "name": "N",
                                 "gtin": "00812345000061", "reservoir_ml": 30,
                                 "nominal_flow_ml_per_day": 1}, {"admin"}),
    ("POST", "/v1/pumps", {"serial_number": "ROLE-{role}", "model_code": "DEMO-INTERA-3000",
                           "lot_number": "L", "expiry_date": "2028-01-01"}, {"biomed", "admin"}),
    ("GET", "/v1/pumps", None, set(ROLES)),
    ("GET", "/v1/pumps/NOPE", None, set(ROLES)),
    ("GET", "/v1/pumps/NOPE/history", None, set(ROLES)),
    ("POST", "/v1/pumps/NOPE/implant", {"patient_mrn": "M", "center": "C",
                                        "implanted_at": "2026-01-01T00:00:00Z"},
     {"biomed", "oncologist", "admin"}),
    ("POST", "/v1/pumps/NOPE/explant", {"reason": "r"}, {"biomed", "oncologist", "admin"}),
    ("POST", "/v1/pumps/NOPE/quarantine", {"reason": "r"}, {"biomed", "admin"}),
    ("POST", "/v1/pumps/NOPE/release", None, {"biomed", "admin"}),
    ("POST", "/v1/pumps/NOPE/retire", {"reason": "r"}, {"biomed", "admin"}),
    ("POST", "/v1/recalls", {"model_code": "NOPE", "lot_numbers": ["L"], "reason": "r"},
     {"biomed", "admin"}),
    ("GET", "/v1/recalls", None, set(ROLES)),
    ("GET", "/v1/recalls/NOPE", None, set(ROLES)),
]
# what an allowed role gets: the write done, or the exact refusal of the unknown resource it
# names (a role let through must reach the service, not fail somewhere on the way)
ALLOWED_STATUS: dict[tuple[str, str], int] = {
    ("POST", "/v1/pump-models"): 201, ("POST", "/v1/pumps"): 201, ("POST", "/v1/recalls"): 422,
    ("GET", "/v1/pump-models"): 200, ("GET", "/v1/pumps"): 200, ("GET", "/v1/recalls"): 200,
}


@pytest.mark.parametrize(("method", "path", "body", "allowed"), ROUTES,
                         ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_role_matrix(inventory: Harness, method: str, path: str, body: dict[str, Any] | None,
                     allowed: set[str]) -> None:
    assert inventory.client.request(method, path, json=body).status_code == 401
    for role in ROLES:
        payload = json.loads(json.dumps(body).replace("{role}", role)) if body else None
        r = inventory.client.request(method, path, json=payload, headers=auth(role, sub=role))
        if role in allowed:
            assert r.status_code == ALLOWED_STATUS.get((method, path), 404), (role, r.text)
        else:
            assert r.status_code == 403, (role, r.text)
