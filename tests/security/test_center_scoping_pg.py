"""Centre scoping walked over every route (CONTRACT.md, HTTP conventions; issue 22), on
PostgreSQL: each service's story (tests/security/stories.py) fills it with the records of
centre `north`; then every operation of its OpenAPI (/v1 and /fhir/R4) is sent with an admin
token of centre `south` only, and nothing of `north` may leak or change:

- a route naming one of north's records (its serial, MRN, id, or the centre itself) answers
  exactly what it answers for an id that does not exist (same status, same body);
- a list or search filtered on one of north's values is empty; unfiltered, it names nothing of
  north (no MRN, serial, id, nor the word `north`) that the request did not carry itself;
- a write, whatever it names, changes no row of north.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import inspect, select

from shared.fhir import FHIR_BASE
from tests import helpers
from tests.factories import T0
from tests.helpers import Harness, auth, test_settings
from tests.security import stories
from tests.security.openapi_walk import concrete, example, operations

SERVICES = ["inventory", "scheduling", "alerts"]
NORTH, SOUTH = "north", "south"
SOUTH_ADMIN = auth("admin", sub="south-admin", centers=[SOUTH])
STORY_ADMIN = auth("admin", sub="story-admin", centers=[NORTH, SOUTH])
MISSING = "NOPE-404"
# path parameter (or FHIR resource type) → (model, column) of the record it names
NAMES = {
    "inventory": {"serial": ("Pump", "serial_number"), "Device": ("Pump", "serial_number")},
    "scheduling": {
        "serial": ("ImplantedPump", "serial_number"), "mrn": ("Patient", "mrn"),
        "Patient": ("Patient", "mrn"), "appointment_id": ("Appointment", "id"),
        "Appointment": ("Appointment", "id"), "delivery_id": ("Delivery", "id"),
        "MedicationRequest": ("Delivery", "id"), "MedicationDispense": ("Delivery", "id"),
        "refill_id": ("Refill", "id"), "Observation": ("Refill", "id"),
        "therapy_id": ("Therapy", "id"),
    },
    "alerts": {"alert_id": ("Alert", "id"), "Flag": ("Alert", "id"),
               "Communication": ("Notification", "id"),
               "notification_id": ("Notification", "id"), "center": ("OncallSchedule", "center")},
}
# records every centre shares (their answer is checked for leaks, not for a 404)
SHARED_PARAMS = {"recall_id"}
# query parameters and body fields that can name one of north's records
FILTERS = {"patient_mrn": "mrn", "pump_serial": "serial", "center": "center",
           "alert_id": "alert_id", "patient": "mrn", "device": "serial", "identifier": "serial",
           "serial_number": "serial", "appointment_id": "appointment_id",
           "delivery_id": "delivery_id"}
REFERENCES = ("mrn", "patient_mrn", "serial_number", "pump_serial", "alert_id", "delivery_id",
              "therapy_id")
FHIR_REFERENCE = {"patient": "Patient/", "device": "Device/"}


def _models(harness: Harness) -> dict[str, Any]:
    module = __import__(f"services.{harness.name}.models", fromlist=["Base"])
    return {m.class_.__name__: m.class_ for m in module.Base.registry.mappers}


def _rows(harness: Harness, model: Any) -> dict[Any, dict[str, Any]]:
    with harness.runtime.uow_factory() as uow:
        mapper = inspect(model)
        return {tuple(mapper.primary_key_from_instance(obj)):
                {c.key: getattr(obj, c.key) for c in mapper.column_attrs}
                for obj in uow.session.scalars(select(model))}


def north_rows(harness: Harness) -> dict[str, dict[Any, dict[str, Any]]]:
    """Every row of north, found from the data, not from the scoping rules: a row whose centre
    is north, or that names (by MRN, serial, alert, delivery, therapy) a row of north."""
    rows = {name: _rows(harness, model) for name, model in _models(harness).items()}
    north: dict[str, dict[Any, dict[str, Any]]] = {name: {} for name in rows}
    named: set[Any] = set()
    grew = True
    while grew:
        grew = False
        for name, by_key in rows.items():
            for key, row in by_key.items():
                if key in north[name] or not (
                        NORTH in (row.get("center"), row.get("oncall_center"))
                        or any(row.get(c) in named for c in REFERENCES if row.get(c))):
                    continue
                north[name][key] = row
                named |= {v for c, v in row.items() if c in ("id", *REFERENCES) and v}
                grew = True
    return north


def _markers(rows: dict[str, dict[Any, dict[str, Any]]]) -> set[str]:
    """What would betray a north record in an answer: its ids, MRNs, serials, its centre."""
    found = {NORTH}
    for by_key in rows.values():
        for row in by_key.values():
            for column, value in row.items():
                if (column in ("id", "mrn", "serial_number", "patient_mrn", "pump_serial")
                        and isinstance(value, str) and len(value) >= 4):
                    found.add(value)
    return found


def _values(service: str, rows: dict[str, dict[Any, dict[str, Any]]]) -> dict[str, list[str]]:
    """Per path parameter (or FHIR type, or filter), the north values it can name."""
    out: dict[str, list[str]] = {"center": [NORTH]}
    for param, (model, column) in NAMES[service].items():
        values = sorted({str(r[column]) for r in rows.get(model, {}).values()})
        if values:
            out[param] = values[:2]
    return out


@pytest.fixture
def pg_settings(tmp_path: Any, pg_database: Callable[[str], str]) -> Iterator[Any]:
    yield test_settings(tmp_path, **{f"{s}_database_url": pg_database(s) for s in SERVICES})


def _story(harness: Harness, bus: Any) -> None:
    def call(method: str, _template: str, path: str, body: Any) -> Any:
        r = harness.client.request(method, path, json=body, headers=STORY_ADMIN)
        assert r.status_code in (200, 201), f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    stories.STORIES[harness.name](harness, bus, call)
    if harness.name == "scheduling":  # north's own settings, and so a history entry
        call("PUT", "", f"/v1/centers/{NORTH}/settings", {"due_soon_hours": 36})
    if harness.name == "inventory":  # a recall that names an implanted pump of north
        call("POST", "", "/v1/pumps", stories.pump_body("SCOPE-SN4", lot="LOT-R2"))
        call("POST", "", "/v1/pumps/SCOPE-SN4/implant",
             {"patient_mrn": "MRN-SCOPE-4", "implanted_at": (T0 - timedelta(days=1)).isoformat(),
              "center": NORTH})
        call("POST", "", "/v1/recalls", stories.recall_body("LOT-R2"))


def _leaks(text: str, markers: set[str], sent: str) -> list[str]:
    return sorted(m for m in markers if m in text and m not in sent)


def _body(spec: dict[str, Any], op: Any, values: dict[str, list[str]], center: str = SOUTH) -> Any:
    """A valid body whose fields that can name a record name north's, at `center`."""
    if op.body is None:
        return None
    body = example(spec, op.body)

    def fill(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                param = FILTERS.get(key)
                if key == "center":
                    out[key] = center
                elif key == "kind" and isinstance(value, str):  # an alert kind
                    out[key] = "flow_abnormal"
                elif param and param in values and isinstance(value, str):
                    out[key] = values[param][0]
                elif isinstance(value, str) and value.startswith("2026-11-01T"):
                    later = timedelta(hours=1 if key.startswith("ends") else -1)
                    out[key] = (T0 + later).isoformat()
                else:
                    out[key] = fill(value)
            return out
        if isinstance(node, list):
            return [fill(v) for v in node]
        return node

    return fill(body)


def _send(harness: Harness, method: str, url: str, body: Any) -> Any:
    if body is None:
        return harness.client.request(method, url, headers=SOUTH_ADMIN)
    return harness.client.request(method, url, content=json.dumps(body),
                                  headers={**SOUTH_ADMIN, "Content-Type": "application/json"})


def _empty(response: Any) -> bool:
    answer = response.json()
    return (answer.get("items") == [] or answer.get("rows") == []  # a page, a report
            or (answer.get("resourceType") == "Bundle" and not answer.get("entry")))


@pytest.mark.parametrize("name", SERVICES)
def test_a_token_of_another_centre_sees_and_changes_nothing_on_any_route(
        name: str, pg_settings: Any) -> None:
    harness, bus = helpers.start(name, pg_settings)
    _story(harness, bus)
    before = north_rows(harness)
    assert sum(len(v) for v in before.values()) >= 2, before
    markers, values = _markers(before), _values(name, before)
    spec = harness.client.get("/openapi.json").json()
    failures: list[str] = []
    probes = {"hidden": 0, "filtered": 0, "listed": 0, "written": 0}
    if name != "inventory":  # inventory's one body with a centre is the implant's, under a serial
        probes["named"] = 0
    for op in operations(spec, prefixes=("/v1", FHIR_BASE)):
        params = [p["name"] for p in op.parameters if p["in"] == "path"]
        fhir_type = op.path.split("/")[3] if op.path.startswith(FHIR_BASE) else None
        body = _body(spec, op, values)
        sent = json.dumps(body)
        if params:
            key = fhir_type if params == ["resource_id"] else params[0]
            if key in SHARED_PARAMS:
                r = _send(harness, op.method, concrete(op.path), body)
                if leaked := _leaks(r.text, markers, sent):
                    failures.append(f"{op.method} {op.path}: leaks {leaked}: {r.text[:300]}")
                continue
            assert key in values, f"{op.method} {op.path}: no north value for {key}"
            for value in values[key]:
                r = _send(harness, op.method, concrete(op.path, {params[0]: value}), body)
                missing = _send(harness, op.method, concrete(op.path, {params[0]: MISSING}), body)
                probes["hidden"] += 1
                if (r.status_code, r.text.replace(value, MISSING)) != (missing.status_code,
                                                                        missing.text):
                    failures.append(f"{op.method} {op.path} [{value}]: {r.status_code} "
                                    f"{r.text[:300]} ≠ missing: {missing.status_code} "
                                    f"{missing.text[:200]}")
                elif r.status_code < 400:
                    failures.append(f"{op.method} {op.path} [{value}]: {r.status_code}")
            continue
        r = _send(harness, op.method, op.path, body)
        if op.method != "GET":
            probes["written"] += 1
            if leaked := _leaks(r.text, markers, sent):
                failures.append(f"{op.method} {op.path}: leaks {leaked}: {r.text[:300]}")
            at_north = _body(spec, op, values, center=NORTH)
            if at_north != body:  # the body names a centre: naming north is refused outright
                r = _send(harness, op.method, op.path, at_north)
                probes["named"] += 1
                if r.status_code != 403:
                    failures.append(f"{op.method} {op.path} at north: {r.status_code} {r.text[:300]}")
            continue
        probes["listed"] += 1
        if r.status_code not in (200, 403) or _leaks(r.text, markers, ""):
            failures.append(f"GET {op.path}: {r.status_code} leaks "
                            f"{_leaks(r.text, markers, '')}: {r.text[:300]}")
        for p in op.parameters:
            param = FILTERS.get(p["name"])
            if p["in"] != "query" or param not in values:
                continue
            value = FHIR_REFERENCE.get(p["name"], "") + values[param][0]
            r = harness.client.get(op.path, params={p["name"]: value}, headers=SOUTH_ADMIN)
            probes["filtered"] += 1
            if not (r.status_code == 403 or (r.status_code == 200 and _empty(r))):
                failures.append(f"GET {op.path}?{p['name']}={value}: {r.status_code} "
                                f"{r.text[:300]}")
    assert not failures, "\n".join(failures)
    assert north_rows(harness) == before, "a write of south changed a row of north"
    assert all(probes.values()), probes


def test_the_recall_names_only_the_callers_implanted_pumps(pg_settings: Any) -> None:
    harness, bus = helpers.start("inventory", pg_settings)
    _story(harness, bus)
    [recall] = [r for r in harness.client.get("/v1/recalls", headers=STORY_ADMIN).json()["items"]
                if r["lot_numbers"] == ["LOT-R2"]]
    assert [i["serial_number"] for i in recall["implanted"]] == ["SCOPE-SN4"]
    seen = harness.client.get(f"/v1/recalls/{recall['recall_id']}", headers=SOUTH_ADMIN).json()
    assert seen["implanted"] == [] and seen["model_code"] == recall["model_code"]
