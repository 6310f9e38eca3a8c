"""The pharmacist's pages: open drug orders by need, and their status changes through
scheduling's HTTP twin of the pharmacy queue (`POST /v1/deliveries/{id}/status`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response

from services.dashboard.api import ApiError
from services.dashboard.localtime import parse_local
from services.dashboard.routes import Ctx, CtxDep, center_of, see_other
from services.dashboard.views import iso_z, parse_ts
from shared.contracts.vocabulary import (
    OPEN_DELIVERY_STATUSES,
    TERMINAL_DELIVERY_STATUSES,
    DeliveryStatus,
)

router = APIRouter()

# what the pharmacist may do next, by the order's status (the service refuses going backwards)
NEXT_STEPS: dict[str, tuple[DeliveryStatus, ...]] = {
    DeliveryStatus.REQUESTED: (DeliveryStatus.ACCEPTED, DeliveryStatus.REJECTED),
    DeliveryStatus.ACCEPTED: (DeliveryStatus.COMPOUNDED, DeliveryStatus.REJECTED),
    DeliveryStatus.COMPOUNDED: (DeliveryStatus.DISPATCHED, DeliveryStatus.REJECTED),
}
STEP_LABELS = {DeliveryStatus.ACCEPTED: "Accept the order",
               DeliveryStatus.COMPOUNDED: "Record compounded",
               DeliveryStatus.DISPATCHED: "Record dispatched",
               DeliveryStatus.REJECTED: "Reject the order"}
STATUS_FIELDS = ("status", "lot", "beyond_use_at", "reason")
# an order is late while the bag has not left the pharmacy by its needed-by time
LEAVING_STATUSES = (DeliveryStatus.DISPATCHED, *TERMINAL_DELIVERY_STATUSES)


@dataclass
class OrderRow:
    """One open order as the pharmacist's list shows it."""

    delivery: dict[str, Any]
    needed_by: datetime | None
    late: bool
    patient: dict[str, Any] | None = None


def order_rows(deliveries: list[dict[str, Any]], now: datetime) -> list[OrderRow]:
    """Open orders, late ones first, then by needed-by time."""
    rows = []
    for d in deliveries:
        needed_by = parse_ts(d.get("needed_by"))
        late = (needed_by is not None and needed_by <= now
                and d.get("status") not in LEAVING_STATUSES)
        rows.append(OrderRow(delivery=d, needed_by=needed_by, late=late))
    rows.sort(key=lambda r: (not r.late, r.needed_by.timestamp() if r.needed_by else float("inf"),
                             str(r.delivery.get("id", ""))))
    return rows


def status_body(status: str, lot: str, beyond_use_at: str, reason: str, now: datetime,
                zone: ZoneInfo) -> tuple[dict[str, Any], dict[str, str]]:
    """The API body of a status change, or the form's errors in plain words; the beyond-use
    time is typed in the centre's local time (`zone`)."""
    errors: dict[str, str] = {}
    if status not in STEP_LABELS:
        errors["status"] = "Choose what happened to the order"
        return {}, errors
    body: dict[str, Any] = {"status": status, "at": iso_z(now)}
    if status == DeliveryStatus.COMPOUNDED:
        if not lot.strip():
            errors["lot"] = "Enter the lot number printed on the compounded bag"
        typed = parse_local(beyond_use_at, zone)
        when = typed.utc
        if when is None:
            errors["beyond_use_at"] = ("Enter the bag's beyond-use date and time" if not
                                       beyond_use_at.strip() else str(typed.error))
        elif when <= now:
            errors["beyond_use_at"] = "The beyond-use time must lie in the future"
        else:
            body["beyond_use_at"] = iso_z(when)
        body["lot"] = lot.strip()
    if status == DeliveryStatus.REJECTED:
        if not reason.strip():
            errors["reason"] = "Say why the order is rejected (the oncologist reads it)"
        body["reason"] = reason.strip()
    return body, errors


def _patients(ctx: Ctx, mrns: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for mrn in dict.fromkeys(mrns):
        try:
            found[mrn] = ctx.api.get("scheduling", f"/v1/patients/{quote(mrn, safe='')}")
        except ApiError:
            found[mrn] = None
    return found


@router.get("/deliveries", response_class=HTMLResponse)
def deliveries_page(ctx: CtxDep) -> HTMLResponse:
    """Open drug orders: late ones first and marked, then by needed-by time."""
    found: list[dict[str, Any]] = []
    for status in OPEN_DELIVERY_STATUSES:
        found += ctx.attempt(lambda status=status: ctx.api.items(
            "scheduling", "/v1/deliveries", status=status, max_items=500), [])
    rows = order_rows(found, ctx.now)
    patients = _patients(ctx, [str(r.delivery.get("patient_mrn")) for r in rows
                               if r.delivery.get("patient_mrn")])
    for row in rows:
        row.patient = patients.get(str(row.delivery.get("patient_mrn")))
    return ctx.render("deliveries.html", rows=rows, late=sum(1 for r in rows if r.late))


def _order_zone(ctx: Ctx, delivery: dict[str, Any] | None,
                patient: dict[str, Any] | None) -> ZoneInfo:
    return ctx.zone(center_of({"delivery": delivery, "patient": patient}) or ctx.only_center())


def _order(ctx: Ctx, delivery_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The order and its patient (None when unknown)."""
    delivery = ctx.attempt(lambda: ctx.api.get(
        "scheduling", f"/v1/deliveries/{quote(delivery_id, safe='')}"))
    patient = None
    if delivery and delivery.get("patient_mrn"):
        patient = _patients(ctx, [str(delivery["patient_mrn"])]).get(str(delivery["patient_mrn"]))
    return delivery, patient


def _order_page(ctx: Ctx, delivery_id: str, *, values: dict[str, str] | None = None,
                field_errors: dict[str, str] | None = None, status_code: int = 200) -> HTMLResponse:
    delivery, patient = _order(ctx, delivery_id)
    zone = _order_zone(ctx, delivery, patient)
    row = order_rows([delivery], ctx.now)[0] if delivery else None
    return ctx.render("delivery.html", status_code=status_code if delivery else 404,
                      delivery=delivery, delivery_id=delivery_id, patient=patient,
                      late=bool(row and row.late),
                      steps=NEXT_STEPS.get(str((delivery or {}).get("status")), ()),
                      step_labels=STEP_LABELS, values=values or {},
                      field_errors=field_errors or {}, zone=zone)


@router.get("/deliveries/{delivery_id}", response_class=HTMLResponse)
def delivery_page(ctx: CtxDep, delivery_id: str, done: str = "") -> HTMLResponse:
    """One order: its drugs and basis, patient and pump, history, and the next steps."""
    if done in STEP_LABELS:
        ctx.flash.append(f"Order marked {done}.")
    return _order_page(ctx, delivery_id)


@router.post("/deliveries/{delivery_id}/status", response_model=None)
def delivery_status(ctx: CtxDep, delivery_id: str, status: Annotated[str, Form()] = "",
                    lot: Annotated[str, Form()] = "", beyond_use_at: Annotated[str, Form()] = "",
                    reason: Annotated[str, Form()] = "") -> Response:
    """Record a status of the order (a repeat changes nothing: a double submit is harmless)."""
    values = {"status": status, "lot": lot, "beyond_use_at": beyond_use_at, "reason": reason}
    delivery, patient = _order(ctx, delivery_id)
    zone = _order_zone(ctx, delivery, patient)
    body, errors = status_body(status, lot, beyond_use_at, reason, ctx.now, zone)
    if errors:
        return _order_page(ctx, delivery_id, values=values, field_errors=errors, status_code=422)
    try:
        ctx.api.post("scheduling", f"/v1/deliveries/{quote(delivery_id, safe='')}/status", body)
    except ApiError as exc:
        field_errors = exc.field_errors(zone) if exc.status == 422 else {}
        if exc.status == 409:
            ctx.errors.append(f"Not applied: {exc.detail}. The order's history keeps your entry.")
        elif set(field_errors) - set(STATUS_FIELDS) or not field_errors:
            ctx.errors.append(exc.banner())
        return _order_page(ctx, delivery_id, values=values, field_errors=field_errors,
                           status_code=exc.status if 400 <= exc.status < 500 else 502)
    return see_other(f"/deliveries/{quote(delivery_id, safe='')}?done={quote(status)}")
