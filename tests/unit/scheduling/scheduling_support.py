"""The scheduling tests' story steps through the API (patient, implant, therapy, dispatch) and
what they read back (worklist, outbox)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from shared.events import EventType
from shared.messaging.inproc import InProcessBus
from tests.factories import pump_implanted
from tests.helpers import Harness, auth, emit

NURSE = auth("nurse", sub="nina")
ONCOLOGIST = auth("oncologist", sub="dr-oz")
PHARMACIST = auth("pharmacist", sub="phil")


def implant(h: Harness, bus: InProcessBus, serial: str = "SN1", mrn: str = "MRN1", *,
            reservoir_ml: float = 30.0, labeled_flow_ml_per_day: float = 1.0,
            center: str = "C1", implanted_at: datetime | None = None) -> None:
    """Inventory says: this pump was implanted in this patient."""
    emit(h, bus, EventType.PUMP_IMPLANTED, pump_implanted(
        serial, mrn, center=center, reservoir_ml=reservoir_ml,
        labeled_flow_ml_per_day=labeled_flow_ml_per_day,
        implanted_at=implanted_at or datetime(2026, 10, 1, tzinfo=UTC)), subject=serial)


def patient(h: Harness, mrn: str = "MRN1", **overrides: Any) -> dict[str, Any]:
    """Register a patient through the API."""
    body = {"mrn": mrn, "given_name": "Ada", "family_name": "Lovelace",
            "birth_date": "1960-05-01", "weight_kg": 70, "center": "C1", **overrides}
    r = h.client.post("/v1/patients", json=body, headers=NURSE)
    assert r.status_code == 201, r.text
    return dict(r.json())


def therapy(h: Harness, mrn: str = "MRN1", serial: str = "SN1", **overrides: Any) -> dict[str, Any]:
    """Start a therapy through the API."""
    body = {"patient_mrn": mrn, "pump_serial": serial, "regimen": "fudr_alternating",
            "start_on": "2026-11-10", **overrides}
    r = h.client.post("/v1/therapies", json=body, headers=ONCOLOGIST)
    assert r.status_code == 201, r.text
    return dict(r.json())


def setup_therapy(h: Harness, bus: InProcessBus, mrn: str = "MRN1", serial: str = "SN1",
                  **overrides: Any) -> dict[str, Any]:
    """Patient, implanted pump and therapy in one go."""
    patient(h, mrn)
    implant(h, bus, serial, mrn)
    return therapy(h, mrn, serial, **overrides)


def outbox(h: Harness, event_type: str | None = None) -> list[dict[str, Any]]:
    """Every event scheduling wrote to its outbox (optionally of one type), oldest first."""
    table = h.runtime.platform.outbox
    stmt = select(table.c.body, table.c.exchange).order_by(table.c.seq)
    if event_type:
        stmt = stmt.where(table.c.routing_key == event_type)
    with h.runtime.engine.connect() as conn:
        return [{**json.loads(r.body), "exchange": r.exchange} for r in conn.execute(stmt)]


def worklist(h: Harness, **params: Any) -> list[dict[str, Any]]:
    """The appointments worklist."""
    r = h.client.get("/v1/appointments", params=params, headers=NURSE)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def dispatch(h: Harness, order_id: str, *, lot: str | None = "LOT-1",
             beyond_use_at: datetime | None = None, status: str = "dispatched") -> dict[str, Any]:
    """The pharmacy says (over HTTP) that an order left with the bag: `dispatched`, lot and
    beyond-use time (by default a week after the clock's now)."""
    at = h.clock.now()  # type: ignore[attr-defined]
    body: dict[str, Any] = {"status": status, "at": at.isoformat()}
    if lot:
        body["lot"] = lot
    body["beyond_use_at"] = (beyond_use_at or at + timedelta(days=7)).isoformat()
    r = h.client.post(f"/v1/deliveries/{order_id}/status", json=body, headers=PHARMACIST)
    assert r.status_code == 200, r.text
    return dict(r.json())
