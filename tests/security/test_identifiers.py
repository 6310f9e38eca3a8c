"""Identifiers that could not be read back, names that are blank (issue 16, item 10): an MRN,
serial, lot or centre must be one URL path segment that fetches the record again, without
surrounding spaces or control characters; a name is never blank. The identifiers in use stay
valid, and every refusal is a 422 naming the field in plain words."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests import helpers
from tests.helpers import Harness, auth, test_settings
from tests.security import stories

ADMIN = auth("admin", sub="ids")
UNREADABLE = ["A/B", "../x", ".", "..", ".hidden", "A\\B", "A%2FB", "MRN\x01", "MRN 1", " ", "", "\t",
              "M\u200bRN"]
BLANK_OR_CONTROL = ["", "   ", "\t", "Ada\x07", "Ada\nLovelace", "\u00a0"]
BAD_CENTRES = ["", "  ", "a/b", "..", ".north", "north\x00", "north\x1b[31m", "x\\y"]


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Harness]]:
    settings_ = test_settings(tmp_path_factory.mktemp("ids"))
    yield {name: helpers.start(name, settings_)[0] for name in ("inventory", "scheduling", "alerts")}


def _refused(harness: Harness, method: str, path: str, body: Any, field: str) -> None:
    r = harness.client.request(method, path, json=body, headers=ADMIN)
    assert r.status_code == 422, f"{method} {path} {body!r}: {r.status_code} {r.text}"
    errors = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert field in errors, errors
    assert "pattern" not in errors[field] and "regex" not in errors[field], errors[field]


@pytest.mark.parametrize("mrn", UNREADABLE)
def test_an_mrn_that_cannot_be_read_back_is_refused(services: dict[str, Harness], mrn: str) -> None:
    sched, inv = services["scheduling"], services["inventory"]
    _refused(sched, "POST", "/v1/patients", stories.patient_body(mrn), "mrn")
    _refused(sched, "POST", "/v1/therapies", stories.therapy_body(mrn=mrn), "patient_mrn")
    _refused(inv, "POST", "/v1/pumps/X-1/implant",
             {"patient_mrn": mrn, "implanted_at": "2026-10-01T00:00:00Z", "center": "north"},
             "patient_mrn")


@pytest.mark.parametrize("code", UNREADABLE)
def test_a_serial_or_lot_that_cannot_be_read_back_is_refused(services: dict[str, Harness],
                                                             code: str) -> None:
    inv, sched = services["inventory"], services["scheduling"]
    _refused(inv, "POST", "/v1/pumps", stories.pump_body(code), "serial_number")
    _refused(inv, "POST", "/v1/pumps", stories.pump_body("SN-OK", lot=code), "lot_number")
    _refused(inv, "POST", "/v1/recalls", {**stories.recall_body(), "lot_numbers": ["L1", code]},
             "lot_numbers.1")
    _refused(sched, "POST", "/v1/therapies", stories.therapy_body(serial=code), "pump_serial")
    refill = stories.refill_body({"id": "a-1", "delivery_id": "d-1"})
    _refused(sched, "POST", "/v1/refills", {**refill, "pump_serial": code}, "pump_serial")


@pytest.mark.parametrize("serial", ["A/B", ".x", "A%2FB"])
def test_a_udi_whose_serial_cannot_be_read_back_is_refused(services: dict[str, Harness],
                                                           serial: str) -> None:
    udi = f"(01)00812345000016(17)281231(10)LOT42(21){serial}"
    r = services["inventory"].client.post("/v1/pumps", json={"udi": udi}, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert "udi.serial_number" in [e["field"] for e in r.json()["errors"]], r.text


@pytest.mark.parametrize("centre", BAD_CENTRES)
def test_a_centre_that_cannot_be_read_back_is_refused(services: dict[str, Harness],
                                                      centre: str) -> None:
    sched, inv, alerts = services["scheduling"], services["inventory"], services["alerts"]
    _refused(sched, "POST", "/v1/patients", {**stories.patient_body("MRN-C"), "center": centre},
             "center")
    _refused(sched, "PATCH", "/v1/patients/MRN-C", {"center": centre}, "center")
    _refused(inv, "POST", "/v1/pumps/X-1/implant",
             {"patient_mrn": "MRN-C", "implanted_at": "2026-10-01T00:00:00Z", "center": centre},
             "center")
    body = stories.silence_body()
    _refused(alerts, "POST", "/v1/silences", {**body, "matchers": {"center": centre}},
             "matchers.center")
    if centre.strip() and centre not in (".", "..") and "/" not in centre and "\x00" not in centre:
        _refused(alerts, "PUT", f"/v1/oncall/{quote(centre, safe='')}", stories.log_oncall(),
                 "center")


@pytest.mark.parametrize("name", BLANK_OR_CONTROL)
def test_a_blank_name_or_one_with_control_characters_is_refused(services: dict[str, Harness],
                                                                 name: str) -> None:
    sched, alerts = services["scheduling"], services["alerts"]
    for field in ("given_name", "family_name"):
        _refused(sched, "POST", "/v1/patients", {**stories.patient_body("MRN-N"), field: name},
                 field)
        _refused(sched, "PATCH", "/v1/patients/MRN-N", {field: name}, field)
    oncall = stories.log_oncall()
    oncall["levels"][0]["members"][0]["name"] = name
    _refused(alerts, "PUT", "/v1/oncall/north", oncall, "levels.0.members.0.name")


def test_the_identifiers_in_use_stay_valid(services: dict[str, Harness]) -> None:
    inv, sched = services["inventory"], services["scheduling"]
    r = inv.client.post("/v1/pumps", json=stories.pump_body("DEMO-SN-0001", lot="LOT42"),
                        headers=ADMIN)
    assert r.status_code == 201, r.text
    assert inv.client.get("/v1/pumps/DEMO-SN-0001", headers=ADMIN).json()["lot_number"] == "LOT42"
    r = sched.client.post("/v1/patients", json={**stories.patient_body("MRN-1"),
                                                "center": "Centre Léon Bérard"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert sched.client.get("/v1/patients/MRN-1", headers=ADMIN).json()["center"] == \
        "Centre Léon Bérard"
    udi = "(01)00812345000016(17)281231(10)LOT42(21)SN1001"
    assert inv.client.post("/v1/pumps", json={"udi": udi}, headers=ADMIN).status_code in (201, 422)


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mrn=st.text(alphabet=st.sampled_from("aZ09-_./\\ %?#~\t\u00e9\u00a0"), max_size=12))
@example(mrn="A/B")
@example(mrn="../x")
@example(mrn=".")
@example(mrn=" MRN-2 ")
@example(mrn="MRN%2F1")
def test_every_mrn_accepted_can_be_fetched_and_corrected(services: dict[str, Harness],
                                                         mrn: str) -> None:
    sched = services["scheduling"]
    r = sched.client.post("/v1/patients", json=stories.patient_body(mrn), headers=ADMIN)
    assert r.status_code in (201, 409, 422), r.text
    if r.status_code == 422:
        assert [e["field"] for e in r.json()["errors"]] == ["mrn"], r.text
        return
    stored = mrn.strip()
    url = f"/v1/patients/{quote(stored, safe='')}"
    got = sched.client.get(url, headers=ADMIN)
    assert got.status_code == 200 and got.json()["mrn"] == stored, (url, got.text)
    fixed = sched.client.patch(url, json={"weight_kg": 71}, headers=ADMIN)
    assert fixed.status_code == 200, (url, fixed.text)
