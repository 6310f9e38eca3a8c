"""Building blocks of the clinical story through the public HTTP API (shared by e2e tests and
benchmarks)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from tests.e2e.topology import Topology
from tests.factories import oncall_body
from tests.helpers import TRANSIENT, wait_until


def setup_oncall(system: Topology, center: str, l1_url: str, l2_url: str | None = None,
                 delay_s: int = 3) -> None:
    levels = [[("Level One", "webhook", l1_url)]]
    if l2_url:
        levels.append([("Level Two", "webhook", l2_url)])
    body = oncall_body(*levels, delay_s=delay_s, shift_hours=24,
                       rotation_start="2026-01-01T00:00:00Z")
    with system.client("alerts", "oncall") as alerts:
        r = alerts.put(f"/v1/oncall/{center}", json=body)
        assert r.status_code == 200, r.text


def implant_new_pump(system: Topology, serial: str, mrn: str, center: str, *, days_ago: float,
                     lot: str) -> float:
    """Register a pump of the first model and implant it `days_ago`; returns its labeled flow."""
    with system.client("inventory", "biomed") as inv:
        model = inv.get("/v1/pump-models").json()["items"][0]
        r = inv.post("/v1/pumps", json={
            "serial_number": serial, "model_code": model["code"], "lot_number": lot,
            "expiry_date": (date.today() + timedelta(days=700)).isoformat()})
        assert r.status_code == 201, r.text
        r = inv.post(f"/v1/pumps/{serial}/implant", json={
            "patient_mrn": mrn, "implanted_at": (datetime.now(UTC) - timedelta(days=days_ago)).isoformat(),
            "center": center})
        assert r.status_code == 200, r.text
        return float(r.json()["labeled_flow_ml_per_day"])


def pump_on_therapy(system: Topology, serial: str, mrn: str, center: str, *,
                    filled_days_ago: float = 14) -> float:
    """Register, implant, patient, saline therapy and a first fill; returns the labeled flow."""
    now = datetime.now(UTC)
    labeled = implant_new_pump(system, serial, mrn, center, days_ago=60, lot="LOT-F")
    with system.client("scheduling", "nurse", "oncologist") as sch:
        r = sch.post("/v1/patients", json={
            "mrn": mrn, "given_name": "Fault", "family_name": "Tolerant",
            "birth_date": "1970-01-01", "weight_kg": 70, "center": center})
        assert r.status_code == 201, r.text
        wait_until(lambda: sch.post("/v1/therapies", json={
            "patient_mrn": mrn, "pump_serial": serial, "regimen": "saline_maintenance",
            "start_on": (now - timedelta(days=filled_days_ago + 1)).date().isoformat(),
        }).status_code == 201, what=f"therapy for {serial}", timeout_s=60, ignoring=TRANSIENT)
        r = sch.post("/v1/refills", json={
            "pump_serial": serial, "performed_at": (now - timedelta(days=filled_days_ago)).isoformat(),
            "residual_volume_ml": 0, "fill_volume_ml": 30, "fill_type": "saline"})
        assert r.status_code == 201, r.text
    return labeled


def abnormal_refill_body(serial: str, labeled: float, *, days_ago: float, elapsed_days: float,
                         factor: float = 1.4) -> dict[str, Any]:
    """The body of a refill whose measured flow is `factor` × the labeled rate."""
    performed = datetime.now(UTC) - timedelta(days=days_ago)
    residual = round(30 - factor * labeled * elapsed_days, 3)
    return {"pump_serial": serial, "performed_at": performed.isoformat(),
            "residual_volume_ml": residual, "fill_volume_ml": 30, "fill_type": "saline"}


def abnormal_refill(system: Topology, serial: str, labeled: float, *, days_ago: float,
                    elapsed_days: float, factor: float = 1.4) -> dict[str, Any]:
    """A refill whose measured flow is `factor` × the labeled rate."""
    with system.client("scheduling", "nurse") as sch:
        r = sch.post("/v1/refills", json=abnormal_refill_body(
            serial, labeled, days_ago=days_ago, elapsed_days=elapsed_days, factor=factor))
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]


def chemo_patient(system: Topology, serial: str, mrn: str, center: str, *,
                  given_name: str = "Safe", family_name: str = "Fill",
                  birth_date: str = "1965-03-03", **therapy: Any) -> None:
    """Patient, pump implanted a month ago, FUDR therapy starting tomorrow (its first chemo
    fill is inside the pharmacy lead time: ordered at once); `therapy` adds to its body."""
    now = datetime.now(UTC)
    implant_new_pump(system, serial, mrn, center, days_ago=30, lot="LOT-S")
    with system.client("scheduling", "nurse", "oncologist") as sch:
        r = sch.post("/v1/patients", json={
            "mrn": mrn, "given_name": given_name, "family_name": family_name,
            "birth_date": birth_date, "weight_kg": 70, "center": center})
        assert r.status_code == 201, r.text
        wait_until(lambda: sch.post("/v1/therapies", json={
            "patient_mrn": mrn, "pump_serial": serial, "regimen": "fudr_alternating",
            "start_on": (now + timedelta(days=1)).date().isoformat(),
            "fudr_mg_per_kg_day": 0.12, "heparin_units": 5000, **therapy}).status_code == 201,
                what=f"therapy for {serial}", timeout_s=60, ignoring=TRANSIENT)
