"""The dashboard's pages: thin routes that call the APIs and render templates."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

import jwt
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.dashboard import csrf
from services.dashboard import session as sess
from services.dashboard.api import Api, ApiError
from services.dashboard.settings import DashboardSettings
from services.dashboard.views import (
    build_worklist,
    flow_chart,
    iso_z,
    normalize_udi,
    parse_form_datetime,
    parse_lots,
    parse_ts,
    sort_alerts,
)
from shared.contracts.vocabulary import (
    OPEN_ALERT_STATUSES,
    AppointmentStatus,
    FillType,
    PumpStatus,
    RefillStatus,
)

router = APIRouter()

EXPIRING_SOON_DAYS = 90
REFILL_FIELDS = ("pump_serial", "performed_at", "residual_volume_ml", "fill_volume_ml", "fill_type",
                 "delivery_id", "notes")


@dataclass
class Ctx:
    """One request's page context: settings, user, APIs, time, and what went wrong."""

    request: Request
    settings: DashboardSettings
    session: sess.Session
    api: Api
    now: datetime
    errors: list[str] = field(default_factory=list)
    flash: list[str] = field(default_factory=list)

    def attempt(self, fn: Any, default: Any = None) -> Any:
        """Run one API call; on failure note the banner and return default (the page goes on)."""
        try:
            return fn()
        except ApiError as exc:
            if exc.banner() not in self.errors:  # one banner per problem, not per call
                self.errors.append(exc.banner())
            return default

    def render(self, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        """Render a page with the common values."""
        return render(self.request, template, status_code=status_code, user=self.session.principal,
                      now=self.now, errors=self.errors, flash=self.flash, **values)


def render(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """Render a template with the settings and the request."""
    templates = request.app.state.templates
    response: HTMLResponse = templates.TemplateResponse(
        request, template, {"settings": request.app.state.settings, **values},
        status_code=status_code)
    return response


def page_context(request: Request) -> Iterator[Ctx]:
    """The signed-in context of a page; sends the browser to sign in when there is none."""
    session = sess.require_session(request)
    api = Api(request.app.state.settings, session.token, request.app.state.transport)
    try:
        yield Ctx(request=request, settings=request.app.state.settings, session=session, api=api,
                  now=request.app.state.clock.now())
    finally:
        api.close()


CtxDep = Annotated[Ctx, Depends(page_context)]


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# --- sign-in --------------------------------------------------------------------------------

@router.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    """The worklist is the home page."""
    return see_other("/worklist")


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/worklist") -> HTMLResponse:
    """The sign-in page: a demo user in development, a pasted token in production."""
    settings: DashboardSettings = request.app.state.settings
    response = render(request, "login.html", next=sess.safe_next(next), error=None,
                      dev=sess.dev_signin_allowed(settings), demo_users=sess.DEMO_USERS,
                      roles=sess.SIGNIN_ROLES, user=None)
    csrf.keep_login_nonce(request, response)
    return response


@router.post("/login", response_model=None)
def login(request: Request, next: Annotated[str, Form()] = "/worklist",
          sub: Annotated[str, Form()] = "", role: Annotated[list[str] | None, Form()] = None,
          token: Annotated[str, Form()] = "") -> Response:
    """Sign in: mint a dev token for a demo user, or accept a token from the identity provider."""
    settings: DashboardSettings = request.app.state.settings
    now = request.app.state.clock.now()
    dev = sess.dev_signin_allowed(settings)
    error = None
    chosen = token.strip().removeprefix("Bearer ").strip()
    if not chosen:
        known = {u.sub: u for u in sess.DEMO_USERS}
        roles = [r for r in (role or []) if r in sess.SIGNIN_ROLES]
        if not dev:
            error = "Paste the token issued by the hospital's identity provider."
        elif sub not in known:
            error = "Choose a demo user."
        else:
            roles = roles or list(known[sub].roles)
            chosen = sess.mint_dev_token(settings, sub, roles, now)
    if chosen and error is None:
        try:
            principal = request.app.state.verifier.verify(chosen)
        except (jwt.InvalidTokenError, jwt.PyJWKClientError) as exc:
            error = f"This token is not accepted: {exc}"
        else:
            if not principal.has_known_role:
                error = sess.NO_KNOWN_ROLE
    if error:
        return render(request, "login.html", status_code=400 if dev else 401,
                      next=sess.safe_next(next), error=error, dev=dev,
                      demo_users=sess.DEMO_USERS, roles=sess.SIGNIN_ROLES, user=None)
    expiry = sess.token_expiry(chosen)
    max_age = int((expiry - now).total_seconds()) if expiry else 3600
    response = see_other(sess.safe_next(next))
    sess.set_session_cookie(response, chosen, max_age_seconds=max_age,
                            secure=settings.env == "production" or request.url.scheme == "https")
    csrf.forget_login_nonce(response)
    return response


@router.post("/logout")
def logout() -> RedirectResponse:
    """Sign out: forget the token."""
    response = see_other("/login")
    sess.clear_session_cookie(response)
    return response


# --- worklist -------------------------------------------------------------------------------

@router.get("/worklist", response_class=HTMLResponse)
def worklist(ctx: CtxDep, center: str | None = None) -> HTMLResponse:
    """Scheduled refills for a center: overdue first, then due today, due soon, later."""
    if center is None:
        center = ctx.request.cookies.get(sess.CENTER_COOKIE, "")
    center = center.strip()
    appointments = ctx.attempt(lambda: ctx.api.items(
        "scheduling", "/v1/appointments", status=AppointmentStatus.SCHEDULED,
        center=center or None), [])
    rows = build_worklist(appointments, ctx.now)
    patients: dict[str, Any] = {}
    for row in rows:
        mrn = row.appointment.get("patient_mrn")
        if mrn and mrn not in patients:
            try:
                patients[mrn] = ctx.api.get("scheduling", f"/v1/patients/{quote(mrn, safe='')}")
            except ApiError:
                patients[mrn] = None
        row.patient = patients.get(mrn) if mrn else None
        delivery_id = row.appointment.get("delivery_id")
        if row.appointment.get("fill_type") == FillType.CHEMO and delivery_id:
            try:
                row.delivery = ctx.api.get("scheduling", f"/v1/deliveries/{quote(str(delivery_id))}")
            except ApiError as exc:
                row.delivery_error = "unknown" if exc.status == 404 else "unavailable"
    counts = {u: sum(1 for r in rows if r.urgency == u) for u in ("overdue", "due_today", "due_soon")}
    response = ctx.render("worklist.html", rows=rows, center=center, counts=counts,
                          near_empty=sum(1 for r in rows if r.near_empty))
    response.set_cookie(sess.CENTER_COOKIE, center, httponly=True, samesite="lax",
                        max_age=3600 * 24 * 90)
    return response


# --- refills --------------------------------------------------------------------------------

def _pump_or_none(ctx: Ctx, serial: str) -> dict[str, Any] | None:
    if not serial:
        return None
    try:
        pump: dict[str, Any] = ctx.api.get("inventory", f"/v1/pumps/{quote(serial, safe='')}")
        return pump
    except ApiError:
        return None


def _delivery_or_none(ctx: Ctx, values: dict[str, str]) -> dict[str, Any] | None:
    """The order a chemo fill names (the scanned id, else the appointment's expected order), to
    show its status, lot and beyond-use time (None when unknown: the service's refusal says why)."""
    delivery_id = values.get("delivery_id") or values.get("expected_delivery_id", "")
    if values.get("fill_type") != FillType.CHEMO or not delivery_id:
        return None
    try:
        delivery: dict[str, Any] = ctx.api.get("scheduling",
                                               f"/v1/deliveries/{quote(delivery_id, safe='')}")
        return delivery
    except ApiError:
        return None


@router.get("/refill", response_class=HTMLResponse)
def refill_form(ctx: CtxDep, pump: str = "", appointment: str = "", fill_type: str = "",
                delivery: str = "") -> HTMLResponse:
    """The refill form, prefilled from a worklist row; the chemo bag's order id is left for the
    nurse to scan (the appointment's order is shown beside it, to compare)."""
    values = {"pump_serial": pump, "appointment_id": appointment, "fill_type": fill_type or FillType.SALINE,
              "delivery_id": "", "expected_delivery_id": delivery.strip(),
              "performed_at": ctx.now.strftime("%Y-%m-%dT%H:%M"),
              "residual_volume_ml": "", "fill_volume_ml": "", "notes": ""}
    return ctx.render("refill.html", values=values, field_errors={}, pump=_pump_or_none(ctx, pump),
                      delivery=_delivery_or_none(ctx, values), idempotency_key=str(uuid.uuid4()))


def _float_or_error(raw: str, name: str, errors: dict[str, str]) -> float | None:
    try:
        return float(raw.replace(",", "."))
    except (ValueError, AttributeError):
        errors[name] = "Enter a number of millilitres, e.g. 2.5"
        return None


@router.post("/refill", response_class=HTMLResponse)
def refill_submit(ctx: CtxDep, pump_serial: Annotated[str, Form()] = "",
                  performed_at: Annotated[str, Form()] = "",
                  residual_volume_ml: Annotated[str, Form()] = "",
                  fill_volume_ml: Annotated[str, Form()] = "",
                  fill_type: Annotated[str, Form()] = "",
                  appointment_id: Annotated[str, Form()] = "",
                  delivery_id: Annotated[str, Form()] = "",
                  expected_delivery_id: Annotated[str, Form()] = "",
                  notes: Annotated[str, Form()] = "",
                  idempotency_key: Annotated[str, Form()] = "") -> HTMLResponse:
    """Record a refill through the scheduling API; its field errors come back beside the fields."""
    values = {"pump_serial": pump_serial.strip(), "performed_at": performed_at,
              "residual_volume_ml": residual_volume_ml, "fill_volume_ml": fill_volume_ml,
              "fill_type": fill_type, "appointment_id": appointment_id,
              "delivery_id": delivery_id.strip(),  # a scanner may add a newline or spaces
              "expected_delivery_id": expected_delivery_id.strip(), "notes": notes}
    field_errors: dict[str, str] = {}
    status_code = 422
    if not values["pump_serial"]:
        field_errors["pump_serial"] = "Enter the pump's serial number"
    when = parse_form_datetime(performed_at)
    if when is None:
        field_errors["performed_at"] = "Enter the date and time of the refill (UTC)"
    residual = _float_or_error(residual_volume_ml, "residual_volume_ml", field_errors)
    fill = _float_or_error(fill_volume_ml, "fill_volume_ml", field_errors)
    if fill_type not in [f.value for f in FillType]:
        field_errors["fill_type"] = "Choose chemo or saline"
    if not field_errors:
        body: dict[str, Any] = {
            "pump_serial": values["pump_serial"], "performed_at": iso_z(when),  # type: ignore[arg-type]
            "residual_volume_ml": residual, "fill_volume_ml": fill, "fill_type": fill_type,
        }
        if appointment_id:
            body["appointment_id"] = appointment_id
        if values["delivery_id"]:
            body["delivery_id"] = values["delivery_id"]
        if notes.strip():
            body["notes"] = notes.strip()
        try:
            refill = ctx.api.post("scheduling", "/v1/refills", body,
                                  idempotency_key=idempotency_key or None)
        except ApiError as exc:
            field_errors = exc.field_errors() if exc.status == 422 else {}
            status_code = exc.status if 400 <= exc.status < 500 else 502
            unplaced = {k: v for k, v in field_errors.items()
                        if k not in (*REFILL_FIELDS, "appointment_id")}
            if exc.status != 422 or unplaced or not field_errors:
                ctx.errors.append(exc.banner())
        else:
            return ctx.render("refill_done.html", status_code=201, refill=refill,
                              abnormal=refill.get("flow_abnormal") is True,
                              next_appointment=refill.get("next_appointment"))
    return ctx.render("refill.html", status_code=status_code, values=values, field_errors=field_errors,
                      pump=_pump_or_none(ctx, values["pump_serial"]),
                      delivery=_delivery_or_none(ctx, values), idempotency_key=str(uuid.uuid4()))


# --- pump and patient -----------------------------------------------------------------------

@router.get("/pumps/{serial}", response_class=HTMLResponse)
def pump_page(ctx: CtxDep, serial: str, voided: str = "") -> HTMLResponse:
    """A pump and its patient: flow chart, device history, next appointment, open alerts."""
    if voided:
        ctx.flash.append(f"Refill {voided} marked entered in error: its reading left the flow "
                         "series and the appointment it completed is open again.")
    path = quote(serial, safe="")
    pump = ctx.attempt(lambda: ctx.api.get("inventory", f"/v1/pumps/{path}"))
    history = ctx.attempt(lambda: ctx.api.items("inventory", f"/v1/pumps/{path}/history"), [])
    readings = ctx.attempt(lambda: ctx.api.items("scheduling", f"/v1/pumps/{path}/flow-readings"), [])
    mrn = (pump or {}).get("patient_mrn") or next(
        (r.get("patient_mrn") for r in reversed(readings) if r.get("patient_mrn")), None)
    patient = None
    appointments: list[dict[str, Any]] = []
    if mrn:
        mrn_path = quote(mrn, safe="")
        patient = ctx.attempt(lambda: ctx.api.get("scheduling", f"/v1/patients/{mrn_path}"))
        appointments = ctx.attempt(lambda: ctx.api.items(
            "scheduling", "/v1/appointments", status=AppointmentStatus.SCHEDULED,
            patient_mrn=mrn), [])
    mine = [a for a in appointments if a.get("pump_serial") in (None, serial)]
    mine.sort(key=lambda a: parse_ts(a.get("due_at")) or ctx.now)
    next_appointment = mine[0] if mine else None
    alerts = ctx.attempt(lambda: ctx.api.items("alerts", "/v1/alerts", pump_serial=serial,
                                               max_items=100), [])
    open_alerts = sort_alerts([a for a in alerts if a.get("status") in OPEN_ALERT_STATUSES])
    labeled = (pump or {}).get("labeled_flow_ml_per_day")
    chart = flow_chart(readings, float(labeled) if labeled is not None else None)
    refills = ctx.attempt(lambda: ctx.api.get("scheduling", "/v1/refills", pump_serial=serial,
                                              limit=10).get("items", []), [])
    latest = next((r for r in refills
                   if r.get("status", RefillStatus.RECORDED) == RefillStatus.RECORDED), None)
    return ctx.render("pump.html", serial=serial, pump=pump, patient=patient, readings=readings,
                      history=history, chart=chart, next_appointment=next_appointment,
                      open_alerts=open_alerts, refills=refills,
                      latest_refill_id=latest.get("id") if latest else None)


def _void_page(ctx: Ctx, serial: str, refill_id: str, *, reason: str = "",
               field_errors: dict[str, str] | None = None, status_code: int = 200) -> HTMLResponse:
    refill = ctx.attempt(lambda: ctx.api.get(
        "scheduling", f"/v1/refills/{quote(refill_id, safe='')}"))
    return ctx.render("refill_void.html", serial=serial, refill=refill, refill_id=refill_id,
                      reason=reason, field_errors=field_errors or {},
                      status_code=status_code if refill else 404)


@router.get("/pumps/{serial}/refills/{refill_id}/entered-in-error", response_class=HTMLResponse)
def refill_void_form(ctx: CtxDep, serial: str, refill_id: str) -> HTMLResponse:
    """The confirmation step of marking a refill entered in error: what it was, and why."""
    return _void_page(ctx, serial, refill_id)


@router.post("/pumps/{serial}/refills/{refill_id}/entered-in-error", response_model=None)
def refill_void_submit(ctx: CtxDep, serial: str, refill_id: str,
                       reason: Annotated[str, Form()] = "") -> Response:
    """Mark the refill entered in error through the scheduling API; a missing reason or the
    API's refusal comes back on the confirmation page."""
    if not reason.strip():
        return _void_page(ctx, serial, refill_id, field_errors={
            "reason": "Say why this refill record is wrong"}, status_code=422)
    try:
        ctx.api.post("scheduling", f"/v1/refills/{quote(refill_id, safe='')}/entered-in-error",
                     {"reason": reason.strip()})
    except ApiError as exc:
        field_errors = exc.field_errors() if exc.status == 422 else {}
        if not field_errors.get("reason"):
            ctx.errors.append(exc.banner())
        return _void_page(ctx, serial, refill_id, reason=reason, field_errors=field_errors,
                          status_code=exc.status if 400 <= exc.status < 500 else 502)
    return see_other(f"/pumps/{quote(serial, safe='')}?voided={quote(refill_id, safe='')}")


# --- alerts ---------------------------------------------------------------------------------

def _alerts(ctx: Ctx, status: str, center: str) -> list[dict[str, Any]]:
    statuses = OPEN_ALERT_STATUSES if status == "open" else (() if status == "all" else (status,))
    found: list[dict[str, Any]] = []
    if not statuses:
        found = ctx.attempt(lambda: ctx.api.items("alerts", "/v1/alerts", center=center or None,
                                                  max_items=200), [])
    for st in statuses:
        found += ctx.attempt(lambda st=st: ctx.api.items("alerts", "/v1/alerts", status=st,
                                                         center=center or None, max_items=200), [])
    return sort_alerts(found)


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(ctx: CtxDep, status: str = "open", center: str = "") -> HTMLResponse:
    """Alerts, refreshing by themselves every few seconds."""
    return ctx.render("alerts.html", alerts=_alerts(ctx, status, center), status=status, center=center)


@router.get("/alerts/table", response_class=HTMLResponse)
def alerts_table(ctx: CtxDep, status: str = "open", center: str = "") -> HTMLResponse:
    """The alert list alone, for the page's polling."""
    return ctx.render("_alerts_table.html", alerts=_alerts(ctx, status, center), status=status,
                      center=center)


@router.get("/alerts/{alert_id}", response_class=HTMLResponse)
def alert_page(ctx: CtxDep, alert_id: str, n: str = "") -> HTMLResponse:
    """One alert with its timeline and pages: where the on-call link lands (`n`, the page whose
    link was opened, is marked seen; a page that cannot be is no reason not to show the alert)."""
    path = quote(alert_id, safe="")
    if n:
        with contextlib.suppress(ApiError):
            ctx.api.post("alerts", f"/v1/notifications/{quote(n, safe='')}/seen", {})
    alert = ctx.attempt(lambda: ctx.api.get("alerts", f"/v1/alerts/{path}"))
    notifications = ctx.attempt(lambda: ctx.api.items("alerts", "/v1/notifications",
                                                      alert_id=alert_id), []) if alert else []
    return ctx.render("alert.html", alert=alert, alert_id=alert_id, notifications=notifications,
                      status_code=200 if alert else 404)


def _alert_action(ctx: Ctx, alert_id: str, action: str, body: dict[str, Any], back: str,
                  status: str, center: str) -> Response:
    path = quote(alert_id, safe="")
    try:
        ctx.api.post("alerts", f"/v1/alerts/{path}/{action}", body)
        ctx.flash.append(f"Alert {'acknowledged' if action == 'ack' else 'resolved'}.")
    except ApiError as exc:
        ctx.errors.append(exc.banner())
    if is_htmx(ctx.request):
        return ctx.render("_alerts_table.html", alerts=_alerts(ctx, status, center), status=status,
                          center=center)
    if ctx.errors:
        alert = ctx.attempt(lambda: ctx.api.get("alerts", f"/v1/alerts/{path}"))
        return ctx.render("alert.html", alert=alert, alert_id=alert_id, notifications=[],
                          status_code=409)
    return see_other(sess.safe_next(back))


@router.post("/alerts/{alert_id}/ack", response_model=None)
def alert_ack(ctx: CtxDep, alert_id: str, note: Annotated[str, Form()] = "",
              back: Annotated[str, Form()] = "/alerts", status: Annotated[str, Form()] = "open",
              center: Annotated[str, Form()] = "") -> Response:
    """Acknowledge an alert in one click."""
    body = {"note": note.strip()} if note.strip() else {}
    return _alert_action(ctx, alert_id, "ack", body, back, status, center)


@router.post("/alerts/{alert_id}/resolve", response_model=None)
def alert_resolve(ctx: CtxDep, alert_id: str, resolution: Annotated[str, Form()] = "",
                  back: Annotated[str, Form()] = "/alerts", status: Annotated[str, Form()] = "open",
                  center: Annotated[str, Form()] = "") -> Response:
    """Resolve an alert in one click."""
    text = resolution.strip() or f"resolved on the dashboard by {ctx.session.principal.sub}"
    return _alert_action(ctx, alert_id, "resolve", {"resolution": text}, back, status, center)


# --- stock ----------------------------------------------------------------------------------

STATUSES = (PumpStatus.IN_STOCK, PumpStatus.QUARANTINED, PumpStatus.IMPLANTED, PumpStatus.EXPLANTED,
            PumpStatus.RETIRED)  # the stock page's order


def _stock(ctx: Ctx, expiring_within_days: int, status: str = "", **values: Any) -> HTMLResponse:
    models = ctx.attempt(lambda: ctx.api.items("inventory", "/v1/pump-models"), [])
    pumps = ctx.attempt(lambda: ctx.api.items("inventory", "/v1/pumps", max_items=2000), [])
    counts = {s: sum(1 for p in pumps if p.get("status") == s) for s in STATUSES}
    before = (ctx.now + timedelta(days=expiring_within_days)).date().isoformat()
    expiring = ctx.attempt(lambda: ctx.api.items("inventory", "/v1/pumps", status=PumpStatus.IN_STOCK,
                                                 expiring_before=before), [])
    expiring.sort(key=lambda p: str(p.get("expiry_date", "")))
    shown = [p for p in pumps if not status or p.get("status") == status]
    values.setdefault("udi_values", {})
    values.setdefault("field_errors", {})
    values.setdefault("registered", None)
    values["idempotency_key"] = str(uuid.uuid4())
    return ctx.render("stock.html", status_code=values.pop("status_code", 200), models=models,
                      pumps=shown, counts=counts, statuses=STATUSES, status=status,
                      expiring=expiring, expiring_within_days=expiring_within_days,
                      today=ctx.now.date().isoformat(), **values)


@router.get("/stock", response_class=HTMLResponse)
def stock_page(ctx: CtxDep, status: str = "",
               expiring_within_days: int = EXPIRING_SOON_DAYS) -> HTMLResponse:
    """Pumps by status, those expiring soon, and registration by UDI."""
    return _stock(ctx, expiring_within_days, status)


@router.post("/stock/register", response_class=HTMLResponse)
def stock_register(ctx: CtxDep, udi: Annotated[str, Form()] = "",
                   serial_number: Annotated[str, Form()] = "",
                   model_code: Annotated[str, Form()] = "",
                   lot_number: Annotated[str, Form()] = "",
                   expiry_date: Annotated[str, Form()] = "",
                   labeled_flow_ml_per_day: Annotated[str, Form()] = "",
                   location: Annotated[str, Form()] = "",
                   idempotency_key: Annotated[str, Form()] = "") -> HTMLResponse:
    """Register a received pump from its scanned UDI (or typed fields)."""
    form = {"udi": udi, "serial_number": serial_number, "model_code": model_code,
            "lot_number": lot_number, "expiry_date": expiry_date,
            "labeled_flow_ml_per_day": labeled_flow_ml_per_day, "location": location}
    field_errors: dict[str, str] = {}
    body: dict[str, Any]
    if udi.strip():
        body = {"udi": normalize_udi(udi)}
    elif serial_number.strip():
        body = {"serial_number": serial_number.strip(), "model_code": model_code.strip(),
                "lot_number": lot_number.strip(), "expiry_date": expiry_date.strip()}
    else:
        field_errors["udi"] = "Scan the UDI barcode (or type the serial number and the other fields)"
        body = {}
    if labeled_flow_ml_per_day.strip():
        flow = _float_or_error(labeled_flow_ml_per_day, "labeled_flow_ml_per_day", field_errors)
        body["labeled_flow_ml_per_day"] = flow
    if location.strip():
        body["location"] = location.strip()
    registered = None
    status_code = 422
    if not field_errors:
        try:
            registered = ctx.api.post("inventory", "/v1/pumps", body,
                                      idempotency_key=idempotency_key or None)
        except ApiError as exc:
            field_errors = exc.field_errors() if exc.status == 422 else {}
            status_code = exc.status if 400 <= exc.status < 500 else 502
            if exc.status != 422 or not field_errors:
                ctx.errors.append(exc.banner())
            elif set(field_errors) - set(form):
                # an error about a field the form does not show: put it beside the scan field
                field_errors["udi"] = "; ".join(f"{k}: {v}" for k, v in field_errors.items())
    if registered:
        ctx.flash.append(f"Registered pump {registered.get('serial_number')}.")
        return _stock(ctx, EXPIRING_SOON_DAYS, registered=registered, status_code=201)
    return _stock(ctx, EXPIRING_SOON_DAYS, udi_values=form, field_errors=field_errors,
                  status_code=status_code)


# --- recalls --------------------------------------------------------------------------------

@router.get("/recall", response_class=HTMLResponse)
def recall_form(ctx: CtxDep) -> HTMLResponse:
    """The recall form."""
    models = ctx.attempt(lambda: ctx.api.items("inventory", "/v1/pump-models"), [])
    return ctx.render("recall.html", models=models, values={}, preview=None, result=None,
                      field_errors={}, idempotency_key=str(uuid.uuid4()))


@router.post("/recall", response_class=HTMLResponse)
def recall_submit(ctx: CtxDep, model_code: Annotated[str, Form()] = "",
                  lot_numbers: Annotated[str, Form()] = "", reason: Annotated[str, Form()] = "",
                  action: Annotated[str, Form()] = "preview",
                  idempotency_key: Annotated[str, Form()] = "") -> HTMLResponse:
    """Preview the pumps a recall names, or issue it and list the implanted ones to follow up."""
    models = ctx.attempt(lambda: ctx.api.items("inventory", "/v1/pump-models"), [])
    values = {"model_code": model_code, "lot_numbers": lot_numbers, "reason": reason}
    lots = parse_lots(lot_numbers)
    field_errors: dict[str, str] = {}
    if not model_code:
        field_errors["model_code"] = "Choose the recalled model"
    if not lots:
        field_errors["lot_numbers"] = "Enter at least one lot number"
    if action == "issue" and not reason.strip():
        field_errors["reason"] = "Give the reason (e.g. the manufacturer's notice)"
    preview = result = None
    if not field_errors and action == "issue":
        try:
            result = ctx.api.post("inventory", "/v1/recalls",
                                  {"model_code": model_code, "lot_numbers": lots,
                                   "reason": reason.strip()},
                                  idempotency_key=idempotency_key or None)
        except ApiError as exc:
            field_errors = exc.field_errors() if exc.status == 422 else {}
            if exc.status != 422 or not field_errors:
                ctx.errors.append(exc.banner())
    elif not field_errors:
        preview = []
        for lot in lots:
            preview += ctx.attempt(lambda lot=lot: ctx.api.items(
                "inventory", "/v1/pumps", model_code=model_code, lot_number=lot), [])
    return ctx.render("recall.html", status_code=422 if field_errors else 200, models=models,
                      values=values, preview=preview, result=result, field_errors=field_errors,
                      idempotency_key=idempotency_key if preview is not None else str(uuid.uuid4()))
