"""The oncologist's reads on PostgreSQL: the patient list and search (`GET /v1/patients`), and a
therapy's next order computed before it goes (`GET /v1/therapies/{id}/next-order`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import update

from services.scheduling.models import Therapy
from shared.clock import MovableClock
from tests.factories import T0
from tests.helpers import Harness, start
from tests.helpers import test_settings as settings_for
from tests.unit.scheduling.scheduling_support import NURSE, ONCOLOGIST, implant, patient, therapy


@pytest.fixture
def pg(tmp_path: Path, pg_database: Callable[[str], str]) -> tuple[Harness, object]:
    url = pg_database("scheduling")
    return start("scheduling", settings_for(tmp_path, scheduling_database_url=url), MovableClock(T0))


def _mrns(h: Harness, **params: str) -> list[str]:
    r = h.client.get("/v1/patients", params=params, headers=NURSE)
    assert r.status_code == 200, r.text
    return [p["mrn"] for p in r.json()["items"]]


def test_patients_are_listed_by_family_name_and_found_by_the_start_of_a_name_or_mrn(
        pg: tuple[Harness, object]) -> None:
    h, _ = pg
    patient(h, "MRN-2", family_name="Zeta", given_name="Ann")
    patient(h, "MRN-1", family_name="Alpha", given_name="Bob", center="C2")
    patient(h, "X_9", family_name="Mid%dle", given_name="Cy")
    assert _mrns(h) == ["MRN-1", "X_9", "MRN-2"]
    assert _mrns(h, q="zet") == ["MRN-2"]
    assert _mrns(h, q="bo") == ["MRN-1"]
    assert _mrns(h, q="mrn-") == ["MRN-1", "MRN-2"]
    assert _mrns(h, center="C2") == ["MRN-1"]
    # LIKE's wildcards are taken literally
    assert _mrns(h, q="%") == []
    assert _mrns(h, q="X_") == ["X_9"]
    assert _mrns(h, q="Mid%") == ["X_9"]
    assert h.client.get("/v1/patients", params={"q": "a\x00"}, headers=NURSE).status_code == 422
    page = h.client.get("/v1/patients", params={"limit": 2}, headers=NURSE).json()
    rest = h.client.get("/v1/patients", params={"limit": 2, "cursor": page["next_cursor"]},
                        headers=NURSE).json()
    assert [p["mrn"] for p in page["items"] + rest["items"]] == ["MRN-1", "X_9", "MRN-2"]


def test_the_next_order_shows_the_fudr_amount_and_its_basis_and_follows_the_weight(
        pg: tuple[Harness, object]) -> None:
    h, bus = pg
    patient(h, weight_kg=70)
    implant(h, bus)  # 30 mL reservoir, 1.0 mL/day labeled
    t = therapy(h, fudr_mg_per_kg_day=0.12, heparin_units=30000)
    r = h.client.get(f"/v1/therapies/{t['id']}/next-order", headers=ONCOLOGIST)
    assert r.status_code == 200, r.text
    body = r.json()
    fudr = body["drugs"][0]
    assert (fudr["code"], fudr["amount"], fudr["unit"]) == ("floxuridine", 252.0, "mg")
    assert fudr["basis"].startswith("0.12 mg/kg/day x 70 kg x 30 mL / 1.0 mL/day")
    assert body["drugs"][1]["unit"] == "units"
    assert (body["dosing_weight_kg"], body["flow_source"], body["refused_reason"]) == (70, "labeled", None)
    assert body["appointment_id"] and body["patient_mrn"] == "MRN1"
    # the weight changes: the next order follows
    assert h.client.patch("/v1/patients/MRN1", json={"weight_kg": 80},
                          headers=ONCOLOGIST).status_code == 200
    again = h.client.get(f"/v1/therapies/{t['id']}/next-order", headers=ONCOLOGIST).json()
    assert again["drugs"][0]["amount"] == 288.0


def test_the_next_order_says_why_it_would_be_refused(pg: tuple[Harness, object]) -> None:
    h, bus = pg
    patient(h)
    implant(h, bus)
    t = therapy(h)
    # a row written before the hard limits existed: the order would be refused, and the
    # preview says why in words
    with h.runtime.engine.begin() as conn:
        conn.execute(update(Therapy).where(Therapy.id == t["id"]).values(fudr_mg_per_kg_day=3.0))
    body = h.client.get(f"/v1/therapies/{t['id']}/next-order", headers=NURSE).json()
    assert body["drugs"] == []
    assert body["refused_field"] == "fudr_mg_per_kg_day"
    assert "hard limit" in body["refused_reason"]
    assert h.client.get("/v1/therapies/nope/next-order", headers=NURSE).status_code == 404


def test_a_saline_therapy_has_no_drug_order(pg: tuple[Harness, object]) -> None:
    h, bus = pg
    patient(h)
    implant(h, bus)
    t = therapy(h, regimen="saline_maintenance")
    body = h.client.get(f"/v1/therapies/{t['id']}/next-order", headers=NURSE).json()
    assert (body["drugs"], body["refused_reason"], body["regimen"]) == ([], None,
                                                                       "saline_maintenance")
