"""The baseline of `bench.api_load`: a bare FastAPI + SQLAlchemy app on the services' own databases.

It runs the same queries as the services, with nothing around them: no auth, no middleware, no
unit of work, no outbox, no audit, no idempotency.
  - `GET /v1/pumps/{serial}`: the same SELECT on inventory's `pumps` table, answered as `PumpRead`;
  - `GET /v1/appointments?status=&center=&due_before=&limit=`: the same SELECT on scheduling's
    `appointments` (same filters, order by `due_at, id`, `limit + 1`), a page of `AppointmentRead`;
  - `POST /v1/refills`: the essential work of scheduling's refill in one transaction: read the pump
    and its open therapy, lock the open appointment, read the previous fill, check and compute the
    figures (the same pure functions), insert the refill, complete the appointment, insert the
    next one; answered 201 as `RefillRead` with its `next_appointment`.

    .venv/bin/python -m bench.bare_app --port N --inventory-db URL --scheduling-db URL
"""

from __future__ import annotations

import argparse
import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated

import uvicorn
from fastapi import FastAPI, HTTPException, Query
from pydantic import AwareDatetime, BaseModel
from sqlalchemy import create_engine, select
from sqlalchemy.orm import sessionmaker

from services.inventory.models import Pump
from services.inventory.schemas import PumpRead
from services.scheduling.flow import (
    PreviousFill,
    next_due,
    next_fill_type,
    refill_figures,
    refill_problems,
)
from services.scheduling.models import Appointment, ImplantedPump, Refill, Therapy
from services.scheduling.schemas import AppointmentRead, RefillCreate, RefillRead
from services.scheduling.settings import SchedulingSettings

OPEN_THERAPY = ("active", "paused")
POOL = {"pool_size": 10, "max_overflow": 20}  # the services' pool (shared.db.make_engine)


class AppointmentPage(BaseModel):
    items: list[AppointmentRead]
    next_cursor: str | None = None


def _cursor(appt: Appointment) -> str:
    raw = json.dumps([{"t": appt.due_at.isoformat()}, {"v": appt.id}]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def create_app(inventory_db_url: str, scheduling_db_url: str) -> FastAPI:
    """The bare app on the two databases."""
    settings = SchedulingSettings()  # the same refill rules as the service (HAI_MIN_REFILL_INTERVAL_HOURS)
    inventory = sessionmaker(bind=create_engine(inventory_db_url, **POOL), expire_on_commit=False)
    scheduling = sessionmaker(bind=create_engine(scheduling_db_url, **POOL), expire_on_commit=False)
    app = FastAPI(title="bare baseline")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/pumps/{serial}")
    def get_pump(serial: str) -> PumpRead:
        with inventory() as session:
            pump = session.execute(select(Pump).where(Pump.serial_number == serial)).scalars().first()
            if pump is None:
                raise HTTPException(404, "no such pump")
            return PumpRead.model_validate(pump)

    @app.get("/v1/appointments")
    def worklist(status: str | None = None, center: str | None = None,
                 due_before: Annotated[AwareDatetime | None, Query()] = None,
                 limit: Annotated[int, Query(ge=1, le=500)] = 50) -> AppointmentPage:
        stmt = select(Appointment)
        if status:
            stmt = stmt.where(Appointment.status == status)
        if due_before is not None:
            stmt = stmt.where(Appointment.due_at < due_before)
        if center:
            stmt = stmt.where(Appointment.center == center)
        with scheduling() as session:
            rows = list(session.scalars(stmt.order_by(Appointment.due_at, Appointment.id)
                                        .limit(limit + 1)))
        page = rows[:limit]
        return AppointmentPage(items=[AppointmentRead.model_validate(r) for r in page],
                               next_cursor=_cursor(page[-1]) if len(rows) > limit else None)

    @app.post("/v1/refills", status_code=201)
    def record_refill(body: RefillCreate) -> RefillRead:
        now = datetime.now(UTC)
        performed_at = body.performed_at.astimezone(UTC)
        with scheduling.begin() as session:
            pump = session.get(ImplantedPump, body.pump_serial)
            if pump is None or pump.status != "implanted":
                raise HTTPException(404, "no implanted pump")
            therapy = session.scalar(select(Therapy).where(
                Therapy.pump_serial == pump.serial_number, Therapy.status.in_(OPEN_THERAPY)))
            if therapy is None:
                raise HTTPException(409, "no open therapy")
            appt = session.scalar(select(Appointment).where(
                Appointment.pump_serial == pump.serial_number, Appointment.status == "scheduled",
            ).order_by(Appointment.due_at).limit(1).with_for_update())
            prev_stmt = select(Refill).where(Refill.pump_serial == pump.serial_number)
            if pump.implanted_at is not None:
                prev_stmt = prev_stmt.where(Refill.performed_at >= pump.implanted_at)
            prev = session.scalar(prev_stmt.order_by(Refill.performed_at.desc(), Refill.id.desc())
                                  .limit(1))
            previous = PreviousFill(prev.performed_at, prev.fill_volume_ml) if prev else None
            problems = refill_problems(now=now, performed_at=performed_at,
                                       residual_volume_ml=body.residual_volume_ml,
                                       fill_volume_ml=body.fill_volume_ml,
                                       reservoir_ml=pump.reservoir_ml, previous=previous,
                                       implanted_at=pump.implanted_at,
                                       min_interval_hours=settings.min_refill_interval_hours)
            if problems:
                raise HTTPException(422, [{"field": f, "message": m} for f, m in problems])
            figures = refill_figures(performed_at=performed_at,
                                     residual_volume_ml=body.residual_volume_ml,
                                     fill_volume_ml=body.fill_volume_ml,
                                     labeled_flow_ml_per_day=pump.labeled_flow_ml_per_day,
                                     previous=previous)
            center = appt.center if appt is not None else pump.center or ""
            refill = Refill(
                id=_new_id(), pump_serial=pump.serial_number, patient_mrn=therapy.patient_mrn,
                center=center, therapy_id=therapy.id,
                appointment_id=appt.id if appt is not None else None, delivery_id=body.delivery_id,
                performed_at=performed_at, residual_volume_ml=body.residual_volume_ml,
                fill_volume_ml=body.fill_volume_ml, fill_type=body.fill_type, notes=body.notes,
                elapsed_days=figures.elapsed_days,
                measured_flow_ml_per_day=figures.measured_flow_ml_per_day,
                expected_flow_ml_per_day=figures.expected_flow_ml_per_day,
                flow_deviation_pct=figures.flow_deviation_pct, outside_window=False,
                projected_empty_at=figures.projected_empty_at, recorded_by="bare", created_at=now)
            due_at, due_basis = next_due(performed_at=performed_at,
                                         interval_days=therapy.refill_interval_days,
                                         projected_empty_at=figures.projected_empty_at,
                                         near_empty_hours=settings.near_empty_hours)
            nxt = Appointment(
                id=_new_id(), therapy_id=therapy.id, patient_mrn=therapy.patient_mrn, center=center,
                pump_serial=pump.serial_number,
                fill_type=next_fill_type(therapy.regimen, body.fill_type),
                due_at=due_at, due_basis=due_basis,
                scheduled_for=None, status="scheduled", projected_empty_at=figures.projected_empty_at,
                delivery_id=None, created_at=now, updated_at=now)
            refill.next_appointment_id = nxt.id
            if appt is not None:
                appt.status, appt.refill_id, appt.updated_at = "completed", refill.id, now
            session.add_all([refill, nxt])
            session.flush()
            result = RefillRead.model_validate(refill)
            result.next_appointment = AppointmentRead.model_validate(nxt)
        return result

    return app


def _new_id() -> str:
    return str(uuid.uuid4())


def main(argv: list[str] | None = None) -> None:
    """Serve the bare app with uvicorn, as `hai serve` does (one process, access log off)."""
    parser = argparse.ArgumentParser(prog="python -m bench.bare_app")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--inventory-db", required=True)
    parser.add_argument("--scheduling-db", required=True)
    args = parser.parse_args(argv)
    app = create_app(args.inventory_db, args.scheduling_db)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                lifespan="off", timeout_keep_alive=30)


if __name__ == "__main__":
    main()
