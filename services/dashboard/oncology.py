"""The oncologist's pages: patients (search, register, weight and height), therapies (start,
pause, resume, stop, change a dose with its override reason) and the next order's computed
amounts before it goes (`GET /v1/therapies/{id}/next-order`)."""

from __future__ import annotations

import math
import uuid
from datetime import date
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response

from services.dashboard.api import ApiError
from services.dashboard.localtime import to_local
from services.dashboard.routes import Ctx, CtxDep, see_other
from shared.contracts.vocabulary import PumpStatus, Regimen

router = APIRouter()

PATIENT_FIELDS = ("mrn", "given_name", "family_name", "birth_date", "sex", "weight_kg",
                  "height_cm", "center")
THERAPY_FIELDS = ("pump_serial", "regimen", "start_on", "refill_interval_days",
                  "fudr_mg_per_kg_day", "dosing_weight", "dexamethasone_mg", "heparin_units",
                  "fill_volume_ml", "dose_override_reason")
DOSE_FIELDS = ("fudr_mg_per_kg_day", "dexamethasone_mg", "heparin_units", "dose_override_reason")
ACTIONS = {"pause": "Pause", "resume": "Resume", "stop": "Stop"}
# what a number means, for the sentence of its error
NUMBER_WORDS = {"weight_kg": "a weight in kilograms, e.g. 72.5",
                "height_cm": "a height in centimetres, e.g. 172",
                "refill_interval_days": "a whole number of days, e.g. 14",
                "fudr_mg_per_kg_day": "a dose in mg/kg/day, e.g. 0.12",
                "dexamethasone_mg": "an amount in mg, e.g. 20",
                "heparin_units": "a number of units, e.g. 30000",
                "fill_volume_ml": "a volume in mL, e.g. 30"}


def read_number(raw: str, name: str, errors: dict[str, str], *, positive: bool = True,
                whole: bool = False) -> float | None:
    """A typed number (comma or point), None when left empty; a plain-words error otherwise."""
    text = (raw or "").strip().replace(",", ".")
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or (whole and not value.is_integer()):
        errors[name] = f"Enter {NUMBER_WORDS.get(name, 'a number')}"
        return None
    if value < 0 or (positive and value == 0):
        errors[name] = f"Enter {NUMBER_WORDS.get(name, 'a number')}, more than zero"
        return None
    return int(value) if whole else value


def read_date(raw: str, name: str, errors: dict[str, str], words: str) -> str | None:
    """A `date` input's value (YYYY-MM-DD), or a plain-words error."""
    try:
        return date.fromisoformat((raw or "").strip()).isoformat()
    except ValueError:
        errors[name] = f"Enter {words}"
        return None


def api_errors(ctx: Ctx, exc: ApiError, fields: tuple[str, ...]) -> dict[str, str]:
    """The API's refusal as field errors beside the form's fields (else as the page's banner)."""
    errors = exc.field_errors() if exc.status == 422 else {}
    if exc.status != 422 or not errors or set(errors) - set(fields):
        ctx.errors.append(exc.detail if exc.status == 409 else exc.banner())
    return {k: v for k, v in errors.items() if k in fields}


# ---------------------------------------------------------------- patients

def _patients_page(ctx: Ctx, q: str, *, values: dict[str, str] | None = None,
                   field_errors: dict[str, str] | None = None,
                   status_code: int = 200) -> HTMLResponse:
    patients = ctx.attempt(lambda: ctx.api.items("scheduling", "/v1/patients", q=q.strip() or None,
                                                 max_items=200), [])
    return ctx.render("patients.html", status_code=status_code, patients=patients, q=q,
                      values=values or {}, field_errors=field_errors or {},
                      idempotency_key=str(uuid.uuid4()))


@router.get("/patients", response_class=HTMLResponse)
def patients_page(ctx: CtxDep, q: str = "") -> HTMLResponse:
    """Patients: search by name or MRN, and register a new one."""
    return _patients_page(ctx, q)


@router.post("/patients", response_model=None)
def patient_create(ctx: CtxDep, mrn: Annotated[str, Form()] = "",
                   given_name: Annotated[str, Form()] = "",
                   family_name: Annotated[str, Form()] = "",
                   birth_date: Annotated[str, Form()] = "", sex: Annotated[str, Form()] = "",
                   weight_kg: Annotated[str, Form()] = "", height_cm: Annotated[str, Form()] = "",
                   center: Annotated[str, Form()] = "",
                   idempotency_key: Annotated[str, Form()] = "") -> Response:
    """Register a patient (a double submit answers the first registration again)."""
    values = {"mrn": mrn, "given_name": given_name, "family_name": family_name,
              "birth_date": birth_date, "sex": sex, "weight_kg": weight_kg,
              "height_cm": height_cm, "center": center}
    errors: dict[str, str] = {}
    for name, words in (("mrn", "the medical record number"), ("given_name", "the given name"),
                        ("family_name", "the family name"), ("center", "the centre's code")):
        if not values[name].strip():
            errors[name] = f"Enter {words}"
    born = read_date(birth_date, "birth_date", errors, "the date of birth")
    today = to_local(ctx.now, ctx.zone(center.strip() or ctx.only_center())).date()
    if born and born > today.isoformat():
        errors["birth_date"] = "The date of birth cannot lie in the future"
    weight = read_number(weight_kg, "weight_kg", errors)
    if weight is None and "weight_kg" not in errors:
        errors["weight_kg"] = "Enter the weight in kilograms (the dose follows it)"
    height = read_number(height_cm, "height_cm", errors)
    if sex not in ("", "female", "male"):
        errors["sex"] = "Choose female, male or not given"
    if errors:
        return _patients_page(ctx, "", values=values, field_errors=errors, status_code=422)
    body: dict[str, Any] = {"mrn": mrn.strip(), "given_name": given_name.strip(),
                            "family_name": family_name.strip(), "birth_date": born,
                            "weight_kg": weight, "center": center.strip()}
    if height is not None:
        body["height_cm"] = height
    if sex:
        body["sex"] = sex
    try:
        created = ctx.api.post("scheduling", "/v1/patients", body,
                               idempotency_key=idempotency_key or None)
    except ApiError as exc:
        if exc.status == 409:
            exc.detail = (f"A patient with MRN {mrn.strip()} is already registered: find them in "
                          "the list")
        return _patients_page(ctx, "", values=values, field_errors=api_errors(
            ctx, exc, PATIENT_FIELDS), status_code=exc.status if 400 <= exc.status < 500 else 502)
    return see_other(f"/patients/{quote(str(created['mrn']), safe='')}?done=created")


def _patient_page(ctx: Ctx, mrn: str, *, values: dict[str, str] | None = None,
                  field_errors: dict[str, str] | None = None,
                  status_code: int = 200, confirm_transfer: bool = False) -> HTMLResponse:
    path = quote(mrn, safe="")
    patient = ctx.attempt(lambda: ctx.api.get("scheduling", f"/v1/patients/{path}"))
    therapies: list[dict[str, Any]] = []
    pumps: list[dict[str, Any]] = []
    if patient:
        therapies = ctx.attempt(lambda: ctx.api.items("scheduling", "/v1/therapies",
                                                      patient_mrn=mrn, max_items=50), [])
        pumps = ctx.attempt(lambda: ctx.api.items("inventory", "/v1/pumps", patient_mrn=mrn,
                                                  status=PumpStatus.IMPLANTED, max_items=10), [])
    form = {"regimen": Regimen.FUDR_ALTERNATING, "dosing_weight": "actual",
            "start_on": to_local(ctx.now, ctx.zone((patient or {}).get("center"))).date().isoformat(),
            "pump_serial": pumps[0]["serial_number"] if pumps else ""}
    form.update(values or {})
    return ctx.render("patient.html", status_code=status_code if patient else 404,
                      patient=patient, mrn=mrn, therapies=therapies, pumps=pumps, values=form,
                      field_errors=field_errors or {}, regimens=list(Regimen),
                      idempotency_key=str(uuid.uuid4()),
                      confirm_transfer=confirm_transfer and patient is not None)


@router.get("/patients/{mrn}", response_class=HTMLResponse)
def patient_page(ctx: CtxDep, mrn: str, done: str = "") -> HTMLResponse:
    """One patient: details, weight and height, therapies, and starting one."""
    if done == "created":
        ctx.flash.append("Patient registered.")
    elif done == "updated":
        ctx.flash.append("Weight and height saved: the next order's dose follows them.")
    elif done == "transferred":
        ctx.flash.append("Patient transferred: their open appointments, orders not yet given, "
                         "pump record and open alerts are now the new centre's.")
    return _patient_page(ctx, mrn)


@router.post("/patients/{mrn}", response_model=None)
def patient_update(ctx: CtxDep, mrn: str, weight_kg: Annotated[str, Form()] = "",
                   height_cm: Annotated[str, Form()] = "") -> Response:
    """Change the weight and height (a repeat sets the same values again: harmless)."""
    errors: dict[str, str] = {}
    weight = read_number(weight_kg, "weight_kg", errors)
    height = read_number(height_cm, "height_cm", errors)
    body = {k: v for k, v in (("weight_kg", weight), ("height_cm", height)) if v is not None}
    if not body and not errors:
        errors["weight_kg"] = "Enter the new weight, the new height, or both"
    if errors:
        return _patient_page(ctx, mrn, values={"weight_kg": weight_kg, "height_cm": height_cm},
                             field_errors=errors, status_code=422)
    try:
        ctx.api.request("scheduling", "PATCH", f"/v1/patients/{quote(mrn, safe='')}", json=body)
    except ApiError as exc:
        return _patient_page(ctx, mrn, values={"weight_kg": weight_kg, "height_cm": height_cm},
                             field_errors=api_errors(ctx, exc, PATIENT_FIELDS),
                             status_code=exc.status if 400 <= exc.status < 500 else 502)
    return see_other(f"/patients/{quote(mrn, safe='')}?done=updated")


@router.post("/patients/{mrn}/transfer", response_model=None)
def patient_transfer(ctx: CtxDep, mrn: str, to_center: Annotated[str, Form()] = "",
                     step: Annotated[str, Form()] = "review") -> Response:
    """Move a patient's care to another centre: first the review (what moves, what stays),
    then the confirmed move (scheduling's `PATCH /v1/patients/{mrn}` with the new `center`;
    a repeat once moved is refused here as "already at" and changes nothing)."""
    values = {"to_center": to_center}
    target = to_center.strip()
    errors: dict[str, str] = {}
    patient = ctx.attempt(lambda: ctx.api.get("scheduling", f"/v1/patients/{quote(mrn, safe='')}"))
    if patient is None:
        return _patient_page(ctx, mrn, status_code=404)
    if not target:
        errors["to_center"] = "Enter the code of the centre taking over the patient's care"
    elif target == patient.get("center"):
        errors["to_center"] = f"The patient is already cared for at {target}"
    if errors:
        return _patient_page(ctx, mrn, values=values, field_errors=errors, status_code=422)
    if step != "confirm":
        return _patient_page(ctx, mrn, values=values, confirm_transfer=True)
    try:
        ctx.api.request("scheduling", "PATCH", f"/v1/patients/{quote(mrn, safe='')}",
                        json={"center": target})
    except ApiError as exc:
        if exc.status == 403:  # the token does not cover the centre named
            return _patient_page(ctx, mrn, values=values, status_code=403, field_errors={
                "to_center": f"You may not move patients to {target}: it is not one of your "
                             "centres"})
        field_errors = {("to_center" if k == "center" else k): v
                        for k, v in api_errors(ctx, exc, ("center",)).items()}
        return _patient_page(ctx, mrn, values=values, field_errors=field_errors,
                             status_code=exc.status if 400 <= exc.status < 500 else 502)
    return see_other(f"/patients/{quote(mrn, safe='')}?done=transferred")


# ---------------------------------------------------------------- therapies

def dose_settings(form: dict[str, str], errors: dict[str, str]) -> dict[str, Any]:
    """The dose fields typed (empty ones left out), with their errors in plain words."""
    body: dict[str, Any] = {}
    for name in ("fudr_mg_per_kg_day", "dexamethasone_mg", "heparin_units"):
        value = read_number(form.get(name, ""), name, errors,
                            positive=name == "fudr_mg_per_kg_day")
        if value is not None:
            body[name] = value
    if form.get("dose_override_reason", "").strip():
        body["dose_override_reason"] = form["dose_override_reason"].strip()
    return body


@router.post("/patients/{mrn}/therapies", response_model=None)
def therapy_start(ctx: CtxDep, mrn: str, pump_serial: Annotated[str, Form()] = "",
                  regimen: Annotated[str, Form()] = "", start_on: Annotated[str, Form()] = "",
                  refill_interval_days: Annotated[str, Form()] = "",
                  fudr_mg_per_kg_day: Annotated[str, Form()] = "",
                  dosing_weight: Annotated[str, Form()] = "actual",
                  dexamethasone_mg: Annotated[str, Form()] = "",
                  heparin_units: Annotated[str, Form()] = "",
                  fill_volume_ml: Annotated[str, Form()] = "",
                  dose_override_reason: Annotated[str, Form()] = "",
                  idempotency_key: Annotated[str, Form()] = "") -> Response:
    """Start a therapy on the patient's implanted pump (a double submit starts one)."""
    values = {"pump_serial": pump_serial, "regimen": regimen, "start_on": start_on,
              "refill_interval_days": refill_interval_days,
              "fudr_mg_per_kg_day": fudr_mg_per_kg_day, "dosing_weight": dosing_weight,
              "dexamethasone_mg": dexamethasone_mg, "heparin_units": heparin_units,
              "fill_volume_ml": fill_volume_ml, "dose_override_reason": dose_override_reason}
    errors: dict[str, str] = {}
    if not pump_serial.strip():
        errors["pump_serial"] = "Choose the implanted pump (biomed records the implant first)"
    if regimen not in list(Regimen):
        errors["regimen"] = "Choose the regimen"
    if dosing_weight not in ("actual", "adjusted"):
        errors["dosing_weight"] = "Choose actual or adjusted weight"
    start = read_date(start_on, "start_on", errors, "the first day of the therapy")
    body: dict[str, Any] = {"patient_mrn": mrn, "pump_serial": pump_serial.strip(),
                            "regimen": regimen, "start_on": start, "dosing_weight": dosing_weight,
                            **dose_settings(values, errors)}
    interval = read_number(refill_interval_days, "refill_interval_days", errors, whole=True)
    fill = read_number(fill_volume_ml, "fill_volume_ml", errors)
    body.update({k: v for k, v in (("refill_interval_days", interval),
                                   ("fill_volume_ml", fill)) if v is not None})
    if errors:
        return _patient_page(ctx, mrn, values=values, field_errors=errors, status_code=422)
    try:
        created = ctx.api.post("scheduling", "/v1/therapies", body,
                               idempotency_key=idempotency_key or None)
    except ApiError as exc:
        return _patient_page(ctx, mrn, values=values,
                             field_errors=api_errors(ctx, exc, THERAPY_FIELDS),
                             status_code=exc.status if 400 <= exc.status < 500 else 502)
    return see_other(f"/therapies/{quote(str(created['id']), safe='')}?done=started")


def _therapy_page(ctx: Ctx, therapy_id: str, *, values: dict[str, str] | None = None,
                  field_errors: dict[str, str] | None = None,
                  status_code: int = 200, confirm_stop: bool = False) -> HTMLResponse:
    path = quote(therapy_id, safe="")
    therapy = ctx.attempt(lambda: ctx.api.get("scheduling", f"/v1/therapies/{path}"))
    patient = preview = None
    appointments: list[dict[str, Any]] = []
    if therapy:
        mrn = str(therapy["patient_mrn"])
        patient = ctx.attempt(lambda: ctx.api.get("scheduling",
                                                  f"/v1/patients/{quote(mrn, safe='')}"))
        preview = ctx.attempt(lambda: ctx.api.get("scheduling",
                                                  f"/v1/therapies/{path}/next-order"))
        appointments = [a for a in ctx.attempt(lambda: ctx.api.items(
            "scheduling", "/v1/appointments", patient_mrn=mrn, max_items=20), [])
            if a.get("therapy_id") == therapy["id"]]
    form = {name: "" if (therapy or {}).get(name) is None else str(therapy[name])
            for name in DOSE_FIELDS if name != "dose_override_reason"}  # a new override, a new reason
    form.update(values or {})
    return ctx.render("therapy.html", status_code=status_code if therapy else 404,
                      therapy=therapy, therapy_id=therapy_id, patient=patient, preview=preview,
                      appointments=appointments, values=form, field_errors=field_errors or {},
                      actions=ACTIONS, confirm_stop=confirm_stop and therapy is not None)


@router.get("/therapies/{therapy_id}", response_class=HTMLResponse)
def therapy_page(ctx: CtxDep, therapy_id: str, done: str = "") -> HTMLResponse:
    """One therapy: its settings, the next order's amounts and basis, and what can be changed."""
    messages = {"started": "Therapy started.", "dose": "Dose saved.", "pause": "Therapy paused.",
                "resume": "Therapy resumed.", "stop": "Therapy stopped."}
    if done in messages:
        ctx.flash.append(messages[done])
    return _therapy_page(ctx, therapy_id)


@router.post("/therapies/{therapy_id}/dose", response_model=None)
def therapy_dose(ctx: CtxDep, therapy_id: str, fudr_mg_per_kg_day: Annotated[str, Form()] = "",
                 dexamethasone_mg: Annotated[str, Form()] = "",
                 heparin_units: Annotated[str, Form()] = "",
                 dose_override_reason: Annotated[str, Form()] = "") -> Response:
    """Change the dose settings; outside the hard limits the service refuses, and says why."""
    values = {"fudr_mg_per_kg_day": fudr_mg_per_kg_day, "dexamethasone_mg": dexamethasone_mg,
              "heparin_units": heparin_units, "dose_override_reason": dose_override_reason}
    errors: dict[str, str] = {}
    body = dose_settings(values, errors)
    if not body and not errors:
        errors["fudr_mg_per_kg_day"] = "Enter the new dose"
    if errors:
        return _therapy_page(ctx, therapy_id, values=values, field_errors=errors, status_code=422)
    try:
        ctx.api.request("scheduling", "PATCH", f"/v1/therapies/{quote(therapy_id, safe='')}",
                        json=body)
    except ApiError as exc:
        return _therapy_page(ctx, therapy_id, values=values,
                             field_errors=api_errors(ctx, exc, DOSE_FIELDS),
                             status_code=exc.status if 400 <= exc.status < 500 else 502)
    return see_other(f"/therapies/{quote(therapy_id, safe='')}?done=dose")


@router.post("/therapies/{therapy_id}/status", response_model=None)
def therapy_status(ctx: CtxDep, therapy_id: str, action: Annotated[str, Form()] = "",
                   reason: Annotated[str, Form()] = "",
                   step: Annotated[str, Form()] = "review") -> Response:
    """Pause, resume or stop; a stop needs a reason (it cancels what is open, for good) and a
    second, confirming step that says so: one click never ends a chemotherapy."""
    errors: dict[str, str] = {}
    if action not in ACTIONS:
        errors["action"] = "Choose pause, resume or stop"
    elif action != "resume" and not reason.strip():
        errors["reason"] = f"Say why the therapy is to {action}"
    if errors:
        return _therapy_page(ctx, therapy_id, values={"reason": reason}, field_errors=errors,
                             status_code=422)
    if action == "stop" and step != "confirm":
        return _therapy_page(ctx, therapy_id, values={"reason": reason}, confirm_stop=True)
    body: dict[str, Any] = {"action": action}
    if reason.strip():
        body["reason"] = reason.strip()
    try:
        ctx.api.request("scheduling", "PATCH", f"/v1/therapies/{quote(therapy_id, safe='')}",
                        json=body)
    except ApiError as exc:
        return _therapy_page(ctx, therapy_id, values={"reason": reason},
                             field_errors=api_errors(ctx, exc, ("reason",)),
                             status_code=exc.status if 400 <= exc.status < 500 else 502)
    return see_other(f"/therapies/{quote(therapy_id, safe='')}?done={action}")
