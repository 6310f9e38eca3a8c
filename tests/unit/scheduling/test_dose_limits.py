"""Hard dose limits per fill (DOMAIN.md, Safety rules) that no override passes: at therapy
create and PATCH, and once more on every order right before it leaves; a refused order is
announced (`hai.scheduling.order.refused`), never a silent gap."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from services.scheduling.deliveries import hard_limits
from services.scheduling.dosing import (
    DosingError,
    DosingWeight,
    HardLimits,
    check_order_hard_limits,
    hard_limit_problems,
    order_drug_lines,
)
from services.scheduling.jobs import sweep
from services.scheduling.models import Appointment, Delivery, Therapy
from services.scheduling.settings import SchedulingSettings
from shared.events import EventType
from tests.factories import T0
from tests.helpers import Harness, start
from tests.helpers import test_settings as settings_for
from tests.unit.scheduling.scheduling_support import (
    NURSE,
    ONCOLOGIST,
    implant,
    outbox,
    patient,
    setup_therapy,
)

LIMITS = hard_limits(SchedulingSettings())
OVERRIDE = {"dose_override_reason": "tumour board 2026-11-01: escalate"}


def test_the_defaults_are_domain_md_safety_rules() -> None:
    assert LIMITS == HardLimits(fudr_min_mg_per_kg_day=0.05, fudr_max_mg_per_kg_day=1.0,
                                dexamethasone_max_mg=50.0, heparin_max_units=100_000.0)


@pytest.mark.parametrize(("fudr", "dex", "heparin", "fields"), [
    (0.05, 0, 0, []),
    (1.0, 50, 100_000, []),
    (None, None, None, []),
    (0.049, None, None, ["fudr_mg_per_kg_day"]),
    (1.01, None, None, ["fudr_mg_per_kg_day"]),
    (2.1e303, None, None, ["fudr_mg_per_kg_day"]),
    (math.inf, None, None, ["fudr_mg_per_kg_day"]),
    (math.nan, None, None, ["fudr_mg_per_kg_day"]),
    (None, 50.5, None, ["dexamethasone_mg"]),
    (None, -1, None, ["dexamethasone_mg"]),
    (None, None, 100_001, ["heparin_units"]),
    (None, None, 1e300, ["heparin_units"]),
    (None, None, math.nan, ["heparin_units"]),
    (3.0, 60, 1e6, ["fudr_mg_per_kg_day", "dexamethasone_mg", "heparin_units"]),
])
def test_hard_limit_problems(fudr: float | None, dex: float | None, heparin: float | None,
                             fields: list[str]) -> None:
    problems = hard_limit_problems(fudr_mg_per_kg_day=fudr, dexamethasone_mg=dex,
                                   heparin_units=heparin, limits=LIMITS)
    assert [f for f, _ in problems] == fields
    for _, message in problems:
        assert "hard limit" in message and "no override passes" in message


def _lines(dose: float, dex: float | None = None, heparin: float | None = None) -> list[Any]:
    return order_drug_lines(dose_mg_per_kg_day=dose, weight=DosingWeight(70, None),
                            fill_volume_ml=30, flow_ml_per_day=1.0, flow_source="labeled",
                            dexamethasone_mg=dex, heparin_units=heparin)


def test_an_order_within_the_hard_range_passes() -> None:
    for dose in (0.05, 0.12, 1.0):
        check_order_hard_limits(_lines(dose, 20, 50_000), weight_kg=70, fill_volume_ml=30,
                                flow_ml_per_day=1.0, limits=LIMITS)


@pytest.mark.parametrize(("amount", "field"), [
    (2100.2, "floxuridine"), (104.8, "floxuridine"), (math.inf, "floxuridine"),
    (math.nan, "floxuridine"),
])
def test_an_fudr_amount_outside_hard_range_x_weight_x_volume_over_flow_is_refused(
        amount: float, field: str) -> None:
    # 70 kg x 30 mL / 1 mL/day: 105–2100 mg
    lines = _lines(0.12)
    lines[0] = type(lines[0])(lines[0].code, lines[0].name, amount, "mg", lines[0].basis)
    with pytest.raises(DosingError) as exc:
        check_order_hard_limits(lines, weight_kg=70, fill_volume_ml=30, flow_ml_per_day=1.0,
                                limits=LIMITS)
    assert exc.value.field == field and "105–2100 mg" in exc.value.message


def test_additives_of_an_order_are_checked_again() -> None:
    with pytest.raises(DosingError) as exc:
        check_order_hard_limits(_lines(0.12, dex=51), weight_kg=70, fill_volume_ml=30,
                                flow_ml_per_day=1.0, limits=LIMITS)
    assert exc.value.field == "dexamethasone"
    with pytest.raises(DosingError) as exc:
        check_order_hard_limits(_lines(0.12, heparin=1e300), weight_kg=70, fill_volume_ml=30,
                                flow_ml_per_day=1.0, limits=LIMITS)
    assert exc.value.field == "heparin"


# ---------------------------------------------------------------- through the API

def _create(h: Harness, **body: Any) -> Any:
    return h.client.post("/v1/therapies", headers=ONCOLOGIST, json={
        "patient_mrn": "MRN1", "pump_serial": "SN1", "regimen": "fudr_alternating",
        "start_on": "2026-11-10", **body})


@pytest.mark.parametrize(("body", "field"), [
    ({"fudr_mg_per_kg_day": 1.5, **OVERRIDE}, "fudr_mg_per_kg_day"),
    ({"fudr_mg_per_kg_day": 0.04, **OVERRIDE}, "fudr_mg_per_kg_day"),
    ({"fudr_mg_per_kg_day": 2.1e303, **OVERRIDE}, "fudr_mg_per_kg_day"),
    ({"dexamethasone_mg": 51}, "dexamethasone_mg"),
    ({"heparin_units": 100_001}, "heparin_units"),
    ({"heparin_units": 1e300}, "heparin_units"),
])
def test_therapy_create_refuses_a_dose_beyond_the_hard_limits(tmp_path: Path, body: dict[str, Any],
                                                               field: str) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    patient(h)
    implant(h, bus)
    r = _create(h, **body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field
    assert "hard limit" in r.json()["detail"] and "no override passes" in r.json()["detail"]
    # an override within the hard range still passes the label range
    assert _create(h, fudr_mg_per_kg_day=0.9, dexamethasone_mg=50, heparin_units=100_000,
                   **OVERRIDE).status_code == 201


def test_therapy_patch_refuses_a_dose_beyond_the_hard_limits(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    t = setup_therapy(h, bus)
    for body, field in (({"heparin_units": 1e300}, "heparin_units"),
                        ({"fudr_mg_per_kg_day": 2.0, **OVERRIDE}, "fudr_mg_per_kg_day"),
                        ({"dexamethasone_mg": 75}, "dexamethasone_mg")):
        r = h.client.patch(f"/v1/therapies/{t['id']}", json=body, headers=ONCOLOGIST)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == field
    after = h.client.get(f"/v1/therapies/{t['id']}", headers=ONCOLOGIST).json()
    assert after["heparin_units"] is None and after["fudr_mg_per_kg_day"] == 0.12


def test_hard_limits_are_settings(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path, heparin_hard_max_units=5000.0))
    patient(h)
    implant(h, bus)
    assert _create(h, heparin_units=5001).status_code == 422
    assert _create(h, heparin_units=5000).status_code == 201


def _legacy_dose(h: Harness, therapy_id: str, dose: float) -> None:
    """A therapy row written before the hard limits existed (or by a path that skipped them)."""
    with h.runtime.uow_factory() as uow:
        uow.session.execute(update(Therapy).where(Therapy.id == therapy_id)
                            .values(fudr_mg_per_kg_day=dose))
        uow.commit()


def test_the_sweep_refuses_an_order_beyond_the_hard_limits_and_says_so_once(
        tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    t = setup_therapy(h, bus, start_on="2026-11-20", **OVERRIDE)  # ordered from T0+15d
    _legacy_dose(h, t["id"], 2.1e303)
    h.clock.set(T0 + timedelta(days=16))  # type: ignore[attr-defined]
    facts = sweep(h.runtime)
    assert facts["orders_placed"] == 0 and facts["orders_not_placed"] == 1
    assert outbox(h, EventType.ORDER_REQUESTED) == []
    [refused] = outbox(h, EventType.ORDER_REFUSED)
    data = refused["data"]
    assert data["therapy_id"] == t["id"] and data["field"] == "fudr_mg_per_kg_day"
    assert data["pump_serial"] == "SN1" and data["center"] == "C1" and data["fill_type"] == "chemo"
    assert "hard limit" in data["reason"]
    [appt] = h.client.get("/v1/appointments", headers=NURSE).json()["items"]
    assert appt["id"] == data["appointment_id"] and appt["delivery_id"] is None
    sweep(h.runtime)  # tried again, still refused: not told twice
    assert len(outbox(h, EventType.ORDER_REFUSED)) == 1
    # the oncologist corrects the dose: the order goes at once
    r = h.client.patch(f"/v1/therapies/{t['id']}", json={"fudr_mg_per_kg_day": 0.12},
                       headers=ONCOLOGIST)
    assert r.status_code == 200, r.text
    [order] = outbox(h, EventType.ORDER_REQUESTED)
    assert order["data"]["appointment_id"] == data["appointment_id"]
    # refused again later (a new bad dose): news again
    _legacy_dose(h, t["id"], 2.1e303)  # the same refusal as before, but after an order went
    with h.runtime.uow_factory() as uow:
        uow.session.execute(update(Delivery).values(status="cancelled"))
        uow.session.execute(update(Appointment).values(delivery_id=None))
        uow.commit()
    sweep(h.runtime)
    assert len(outbox(h, EventType.ORDER_REFUSED)) == 2


def test_an_order_placed_at_once_is_checked_too(tmp_path: Path) -> None:
    h, bus = start("scheduling", settings_for(tmp_path))
    t = setup_therapy(h, bus, start_on="2026-11-02")  # the first chemo fill is ordered at once
    assert len(outbox(h, EventType.ORDER_REQUESTED)) == 1
    _legacy_dose(h, t["id"], 1e6)
    r = h.client.post("/v1/refills", headers=NURSE, json={
        "pump_serial": "SN1", "performed_at": (T0 - timedelta(days=12)).isoformat(),
        "residual_volume_ml": 0, "fill_volume_ml": 30, "fill_type": "saline"})
    assert r.status_code == 201, r.text  # the fill is recorded; its next chemo order is not sent
    assert len(outbox(h, EventType.ORDER_REQUESTED)) == 1
    [refused] = outbox(h, EventType.ORDER_REFUSED)
    assert refused["data"]["appointment_id"] == r.json()["next_appointment"]["id"]
