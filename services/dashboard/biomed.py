"""Biomedical engineering's pages: a pump's moves (quarantine, release, retire, implant, explant),
each with a reason and a confirmation step, through inventory's API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response

from services.dashboard.api import ApiError
from services.dashboard.localtime import input_value, parse_local, valid_zone
from services.dashboard.routes import Ctx, CtxDep, see_other
from services.dashboard.views import iso_z
from shared.contracts.vocabulary import PumpStatus

router = APIRouter()


@dataclass(frozen=True)
class PumpAction:
    """One move of a pump: from which statuses, and what the confirmation says it does."""

    name: str
    label: str
    sources: tuple[PumpStatus, ...]
    effect: str
    danger: bool = False


PUMP_ACTIONS = {a.name: a for a in (
    PumpAction("quarantine", "Quarantine", (PumpStatus.IN_STOCK,),
               "The pump leaves usable stock until it is released.", danger=True),
    PumpAction("release", "Release to stock", (PumpStatus.QUARANTINED,),
               "The pump returns to usable stock."),
    PumpAction("retire", "Retire", (PumpStatus.IN_STOCK, PumpStatus.QUARANTINED,
                                    PumpStatus.EXPLANTED),
               "The pump is taken out of service for good: this cannot be undone.", danger=True),
    PumpAction("implant", "Record implant", (PumpStatus.IN_STOCK,),
               "The pump is recorded implanted in the patient; scheduling learns of it and "
               "the oncologist can start a therapy."),
    PumpAction("explant", "Record explant", (PumpStatus.IMPLANTED,),
               "The pump is recorded removed; scheduling stops planning refills for it.",
               danger=True),
)}
ACTION_FIELDS = ("reason", "patient_mrn", "center", "surgeon", "at")


def expired(pump: dict[str, Any], now: datetime) -> bool:
    """Past its expiry date (such a pump may stay on the shelf but is never implanted)."""
    expiry = str(pump.get("expiry_date") or "")
    return bool(expiry) and expiry < now.date().isoformat()


def possible_actions(pump: dict[str, Any], now: datetime) -> list[PumpAction]:
    """The moves this pump allows now (an expired pump is not offered for implant)."""
    status = pump.get("status")
    return [a for a in PUMP_ACTIONS.values() if status in a.sources
            and not (a.name == "implant" and expired(pump, now))]


def action_body(action: str, form: dict[str, str], pump: dict[str, Any], now: datetime,
                zone: ZoneInfo) -> tuple[dict[str, Any], dict[str, str]]:
    """The API body of a move, or the form's errors in plain words; the operation's time is
    typed in the centre's local time (`zone`)."""
    errors: dict[str, str] = {}
    body: dict[str, Any] = {}
    reason = form.get("reason", "").strip()
    if action == "implant":
        if expired(pump, now):
            errors["form"] = (f"This pump expired on {pump.get('expiry_date')}: it cannot be "
                              "implanted. Retire it or return it to the manufacturer.")
        for name, words in (("patient_mrn", "the patient's MRN"), ("center", "the centre")):
            if not form.get(name, "").strip():
                errors[name] = f"Enter {words}"
            body[name] = form.get(name, "").strip()
        if form.get("surgeon", "").strip():
            body["surgeon"] = form["surgeon"].strip()
    elif action == "release":
        if reason:
            body["reason"] = reason
    elif not reason:
        errors["reason"] = f"Say why the pump is to be {PUMP_ACTIONS[action].label.lower()}d" \
            if action != "explant" else "Say why the pump is removed"
    else:
        body["reason"] = reason
    if action in ("implant", "explant"):
        typed = parse_local(form.get("at", ""), zone)
        when = typed.utc
        if when is None:
            errors["at"] = ("Enter the date and time of the operation" if not
                            form.get("at", "").strip() else str(typed.error))
        elif when > now:
            errors["at"] = "The operation cannot lie in the future"
        else:
            body["implanted_at" if action == "implant" else "explanted_at"] = iso_z(when)
    return body, errors


def device_center(action: str, form: dict[str, str], pump: dict[str, Any] | None) -> str | None:
    """The centre whose clock the operation's time is typed in: the one typed for an implant,
    else the pump's."""
    typed = form.get("center", "").strip() if action == "implant" else ""
    return typed or (pump or {}).get("center") or None


def _device_zone(ctx: Ctx, action: str, form: dict[str, str],
                 pump: dict[str, Any] | None) -> ZoneInfo:
    return ctx.zone(device_center(action, form, pump) or ctx.only_center())


def typing_zone(form: dict[str, str], fallback: ZoneInfo) -> ZoneInfo:
    """The zone the form's label named when the time was typed (`at_zone`, sent with it: the
    centre typed for an implant may keep another), else `fallback`."""
    try:
        return valid_zone(form.get("at_zone", "").strip())
    except ValueError:
        return fallback


def _device_page(ctx: Ctx, serial: str, *, action: str = "", values: dict[str, str] | None = None,
                 field_errors: dict[str, str] | None = None, confirm: bool = False,
                 status_code: int = 200) -> HTMLResponse:
    path = quote(serial, safe="")
    pump = ctx.attempt(lambda: ctx.api.get("inventory", f"/v1/pumps/{path}"))
    history = ctx.attempt(lambda: ctx.api.items("inventory", f"/v1/pumps/{path}/history",
                                                max_items=50), []) if pump else []
    zone = _device_zone(ctx, action, values or {}, pump)
    typed_in = typing_zone(values or {}, zone)
    form = {"at": input_value(ctx.now, typed_in)}
    form.update(values or {})
    form["at_zone"] = typed_in.key
    typed = parse_local(form["at"], typed_in).utc if confirm else None
    return ctx.render("device.html", status_code=status_code if pump else 404, serial=serial,
                      pump=pump, history=history,
                      actions=possible_actions(pump, ctx.now) if pump else [],
                      is_expired=bool(pump and expired(pump, ctx.now)),
                      chosen=PUMP_ACTIONS.get(action), values=form,
                      field_errors=field_errors or {}, confirm=confirm, zone=zone,
                      when=typed)


@router.get("/devices/{serial}", response_class=HTMLResponse)
def device_page(ctx: CtxDep, serial: str, done: str = "") -> HTMLResponse:
    """A pump for biomed: status, expiry, history, and the moves it allows now."""
    if done in PUMP_ACTIONS:
        ctx.flash.append(f"{PUMP_ACTIONS[done].label}: done.")
    return _device_page(ctx, serial)


@router.post("/devices/{serial}/{action}", response_model=None)
def device_action(ctx: CtxDep, serial: str, action: str, step: Annotated[str, Form()] = "review",
                  reason: Annotated[str, Form()] = "", patient_mrn: Annotated[str, Form()] = "",
                  center: Annotated[str, Form()] = "", surgeon: Annotated[str, Form()] = "",
                  at: Annotated[str, Form()] = "", at_zone: Annotated[str, Form()] = "") -> Response:
    """First the review (what will happen, with the values), then the confirmed move. A repeat
    of a confirmed move is refused by inventory as a conflict and said so."""
    values = {"reason": reason, "patient_mrn": patient_mrn, "center": center,
              "surgeon": surgeon, "at": at, "at_zone": at_zone}
    if action not in PUMP_ACTIONS:
        ctx.errors.append("There is no such action for a pump.")
        return _device_page(ctx, serial, status_code=404)
    pump = ctx.attempt(lambda: ctx.api.get("inventory", f"/v1/pumps/{quote(serial, safe='')}"))
    if pump is None:
        return _device_page(ctx, serial, status_code=404)
    zone = _device_zone(ctx, action, values, pump)
    body, errors = action_body(action, values, pump, ctx.now, typing_zone(values, zone))
    if "form" in errors:
        ctx.errors.append(errors.pop("form"))
    if errors or ctx.errors:
        return _device_page(ctx, serial, action=action, values=values, field_errors=errors,
                            status_code=422)
    if step != "confirm":
        return _device_page(ctx, serial, action=action, values=values, confirm=True)
    try:
        ctx.api.post("inventory", f"/v1/pumps/{quote(serial, safe='')}/{action}", body)
    except ApiError as exc:
        field_errors = exc.field_errors(zone) if exc.status == 422 else {}
        field_errors = {("at" if k.endswith("_at") else k): v for k, v in field_errors.items()}
        if exc.status == 409:
            ctx.errors.append(f"Not done: {exc.detail}.")
        elif set(field_errors) - set(ACTION_FIELDS) or not field_errors:
            ctx.errors.append(exc.banner())
        return _device_page(ctx, serial, action=action, values=values,
                            field_errors={k: v for k, v in field_errors.items()
                                          if k in ACTION_FIELDS},
                            status_code=exc.status if 400 <= exc.status < 500 else 502)
    return see_other(f"/devices/{quote(serial, safe='')}?done={action}")
