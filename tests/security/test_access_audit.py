"""Every read of patient data leaves who, when and what in the audit trail; only `admin` reads it.

A nurse reads a patient, the worklist, the refills and the deliveries; another nurse reads a
second patient. `GET /v1/audit` then answers, by patient and by actor, exactly those reads, each
with the route template and the ids read; a non-admin gets 403. On SQLite and PostgreSQL (where
the rows of a request go in by COPY).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from tests.factories import T0
from tests.helpers import auth, start, test_settings
from tests.security.stories import refill_body, therapy_ready

ADMIN = auth("admin", sub="auditor")


def _audit(client, **params: Any) -> list[dict[str, Any]]:
    """Every entry matching, following the cursor."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        r = client.get("/v1/audit", params={**params, "limit": 2,
                                            **({"cursor": cursor} if cursor else {})},
                       headers=ADMIN)
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return items


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request, tmp_path, pg_database: Callable[[str], str]):
    if request.param == "sqlite":
        return test_settings(tmp_path)
    return test_settings(tmp_path, scheduling_database_url=pg_database("scheduling"))


def test_reads_of_patient_data_are_audited_and_queryable_by_admin_only(settings):
    harness, bus = start("scheduling", settings)
    client = harness.client

    def call(method: str, _template: str, path: str, body: Any) -> Any:
        r = client.request(method, path, json=body, headers=auth("admin", sub="setup"))
        assert r.status_code in (200, 201), r.text
        return r.json()

    _, appt = therapy_ready(harness, bus, call, serial="SN-A1", mrn="MRN-A1")
    for status, hours_ago in (("accepted", 3), ("dispatched", 2)):
        call("POST", "", f"/v1/deliveries/{appt['delivery_id']}/status",
             {"status": status, "at": (T0 - timedelta(hours=hours_ago)).isoformat()})
    call("POST", "/v1/refills", "/v1/refills", refill_body(appt, serial="SN-A1"))
    therapy_ready(harness, bus, call, serial="SN-B2", mrn="MRN-B2")
    setup_ids = {e["id"] for e in _audit(client)}

    ann, bob = auth("nurse", sub="nurse-ann"), auth("nurse", sub="nurse-bob")
    assert client.get("/v1/patients/MRN-A1", headers=ann).status_code == 200
    worklist = client.get("/v1/appointments", params={"status": "scheduled"}, headers=ann)
    assert worklist.status_code == 200
    assert {a["patient_mrn"] for a in worklist.json()["items"]} == {"MRN-A1", "MRN-B2"}
    refills = client.get("/v1/refills", params={"patient_mrn": "MRN-A1"}, headers=ann).json()
    deliveries = client.get("/v1/deliveries", params={"patient_mrn": "MRN-A1"}, headers=ann).json()
    assert client.get("/v1/patients/MRN-B2", headers=bob).status_code == 200

    # not admin: 403, whatever the role
    for role in ("nurse", "oncologist", "pharmacist", "biomed", "oncall", "service"):
        assert client.get("/v1/audit", headers=auth(role)).status_code == 403, role

    ann_a1 = [e for e in _audit(client, patient_mrn="MRN-A1", actor="nurse-ann")
              if e["id"] not in setup_ids]
    routes = [e["changes"]["route"] for e in ann_a1]
    assert sorted(routes) == sorted(["GET /v1/patients/{mrn}", "GET /v1/appointments",
                                     "GET /v1/refills", "GET /v1/deliveries"]), routes
    assert all(e["action"] == "read" and e["entity_type"] == "patient"
               and e["entity_id"] == "MRN-A1" and e["actor"] == "nurse-ann" for e in ann_a1)
    assert all(e["at"].startswith(T0.isoformat()[:19]) for e in ann_a1), ann_a1
    by_route = {e["changes"]["route"]: e["changes"]["ids"] for e in ann_a1}
    assert by_route["GET /v1/refills"] == [r["id"] for r in refills["items"]] != []
    assert by_route["GET /v1/deliveries"] == [d["id"] for d in deliveries["items"]] != []
    assert by_route["GET /v1/appointments"] == [
        a["id"] for a in worklist.json()["items"] if a["patient_mrn"] == "MRN-A1"]

    # the worklist read of the other patient, and bob's read, are under MRN-B2
    b2 = [(e["actor"], e["changes"]["route"])
          for e in _audit(client, patient_mrn="MRN-B2", action="read")
          if e["id"] not in setup_ids]
    assert sorted(b2) == [("nurse-ann", "GET /v1/appointments"),
                          ("nurse-bob", "GET /v1/patients/{mrn}")], b2
    # since: nothing after the clock's present
    harness.clock.advance(minutes=5)  # type: ignore[attr-defined]
    assert _audit(client, actor="nurse-ann", since=harness.clock.now().isoformat()) == []
    assert len(_audit(client, actor="nurse-bob", since=T0.isoformat())) == 1
