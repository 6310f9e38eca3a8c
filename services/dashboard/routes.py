"""The dashboard's pages: thin routes that call the APIs and render templates."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import jwt
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.dashboard import csrf
from services.dashboard import session as sess
from services.dashboard.api import Api, ApiError
from services.dashboard.localtime import input_value, parse_local, zone_for
from services.dashboard.menu import home_for
from services.dashboard.plain import plain_unplaced
from services.dashboard.settings import DashboardSettings
from services.dashboard.views import (
    WORKLIST_RANKS,
    build_worklist,
    detail_facts,
    flow_chart,
    iso_z,
    normalize_udi,
    page_acknowledgers,
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
from shared.text import text_problem

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

    def attempt(self, fn: Any, default: Any = None, *, missing_ok: bool = False) -> Any:
        """Run one API call; on failure note the banner and return default (the page goes on).
        `missing_ok`: a 404 is an answer (nothing there), not a problem to show."""
        try:
            return fn()
        except ApiError as exc:
            if missing_ok and exc.status == 404:
                return default
            if exc.banner() not in self.errors:  # one banner per problem, not per call
                self.errors.append(exc.banner())
            return default

    def zone(self, center: str | None) -> ZoneInfo:
        """The centre's time zone (its own setting, else `HAI_TIME_ZONE`)."""
        return zone_for(self.settings, center or None, self.api,
                        self.request.app.state.centre_zones)

    def only_center(self) -> str | None:
        """The user's centre when the token names exactly one."""
        centers = self.session.principal.centers
        return next(iter(centers)) if centers is not None and len(centers) == 1 else None

    def render(self, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        """Render a page with the common values; its times in the zone of the centre it shows
        (the `center` chosen, else that of its patient, alert, order or pump)."""
        values.setdefault("zone", self.zone(center_of(values) or self.only_center()))
        values.setdefault("zone_of", self.zone)  # a row's centre's, on a list of several
        return render(self.request, template, status_code=status_code, user=self.session.principal,
                      now=self.now, errors=self.errors, flash=self.flash, **values)


def center_of(values: dict[str, Any]) -> str | None:
    """The centre a page is about: the one chosen, else its patient's, alert's, order's,
    refill's, pump's."""
    for name in ("center", "patient", "alert", "delivery", "refill", "pump", "therapy"):
        value = values.get(name)
        found = value.get("center") if isinstance(value, dict) else value
        if isinstance(found, str) and found:
            return found
    return None


def render(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """Render a template with the settings, the request and the centre's time zone."""
    templates = request.app.state.templates
    settings = request.app.state.settings
    values.setdefault("zone", zone_for(settings, values.get("center") or None))
    response: HTMLResponse = templates.TemplateResponse(
        request, template, {"settings": settings, **values}, status_code=status_code)
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
def home(request: Request) -> RedirectResponse:
    """Each role's first page is its home (the worklist for nurses and the signed out)."""
    session = sess.read_session(request, request.app.state.verifier)
    return see_other(home_for(session.principal.roles) if session else "/worklist")


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    """The sign-in page: a demo user in development, a pasted token in production."""
    settings: DashboardSettings = request.app.state.settings
    response = render(request, "login.html", next=sess.safe_next(next), error=None,
                      dev=sess.dev_signin_allowed(settings), demo_users=sess.DEMO_USERS,
                      roles=sess.SIGNIN_ROLES, user=None)
    csrf.keep_login_nonce(request, response)
    return response


@router.post("/login", response_model=None)
def login(request: Request, next: Annotated[str, Form()] = "/",
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
            chosen = sess.mint_dev_token(settings, sub, roles, now, list(known[sub].centers))
    if chosen and error is None:
        try:
            principal = request.app.state.verifier.verify(chosen)
        except (jwt.InvalidTokenError, jwt.PyJWKClientError) as exc:
            error = f"This token is not accepted: {exc}"
        else:
            error = sess.refusal(principal, settings)
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

def _patients(ctx: Ctx, mrns: Any) -> dict[str, Any]:
    """The patients of these MRNs (None for one scheduling cannot show), one read each."""
    found: dict[str, Any] = {}
    for mrn in mrns:
        if mrn and mrn not in found:
            try:
                found[mrn] = ctx.api.get("scheduling", f"/v1/patients/{quote(mrn, safe='')}")
            except ApiError:
                found[mrn] = None
    return found


def _center(ctx: Ctx, text: str | None) -> str:
    """The centre filter as typed or chosen; control characters (a NUL byte) are refused here,
    before any API is asked, and the page shows every centre."""
    value = (text or "").strip()
    if text_problem(value):
        ctx.errors.append("The centre filter must not contain control characters (such as the "
                          "NUL character); showing every centre.")
        return ""
    return value


def _centers(ctx: Ctx, chosen: str) -> list[str]:
    """The centres to choose from (scheduling's), with the one chosen now."""
    known = ctx.attempt(lambda: [str(c.get("code")) for c in
                                 ctx.api.items("scheduling", "/v1/centers")], [])
    if chosen and chosen not in known:
        known.append(chosen)
    return sorted(known)


@router.get("/worklist", response_class=HTMLResponse)
def worklist(ctx: CtxDep, center: str | None = None) -> HTMLResponse:
    """Scheduled refills for a center, most urgent first: overdue, near empty, critical alert,
    due today, due soon, later; each with its pump's open alerts."""
    if center is None:
        center = ctx.request.cookies.get(sess.CENTER_COOKIE, "")
    center = _center(ctx, center)
    appointments = ctx.attempt(lambda: ctx.api.items(
        "scheduling", "/v1/appointments", status=AppointmentStatus.SCHEDULED,
        center=center or None), [])
    rows = build_worklist(appointments, ctx.now, _alerts(ctx, "open", center))
    patients = _patients(ctx, (r.appointment.get("patient_mrn") for r in rows))
    for row in rows:
        row.patient = patients.get(row.appointment.get("patient_mrn") or "")
        delivery_id = row.appointment.get("delivery_id")
        if row.appointment.get("fill_type") == FillType.CHEMO and delivery_id:
            try:
                row.delivery = ctx.api.get("scheduling", f"/v1/deliveries/{quote(str(delivery_id))}")
            except ApiError as exc:
                row.delivery_error = "unknown" if exc.status == 404 else "unavailable"
    counts = {rank: sum(1 for r in rows if r.rank == rank) for rank in WORKLIST_RANKS}
    counts["critical_alert"] = sum(1 for r in rows if r.critical_alert)  # wherever they sort
    response = ctx.render("worklist.html", rows=rows, center=center, counts=counts,
                          centers=_centers(ctx, center),
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
    show what goes in, its status, lot and beyond-use time (None when unknown: the service's
    refusal says why)."""
    delivery_id = values.get("delivery_id") or values.get("expected_delivery_id", "")
    if values.get("fill_type") != FillType.CHEMO or not delivery_id:
        return None
    try:
        delivery: dict[str, Any] = ctx.api.get("scheduling",
                                               f"/v1/deliveries/{quote(delivery_id, safe='')}")
        return delivery
    except ApiError:
        return None


def _refill_page(ctx: Ctx, values: dict[str, str], field_errors: dict[str, str],
                 status_code: int = 200) -> HTMLResponse:
    """The refill form with the pump, its patient to confirm and the chemo order's contents."""
    pump = _pump_or_none(ctx, values["pump_serial"])
    mrn = (pump or {}).get("patient_mrn")
    patient = _patients(ctx, [mrn]).get(mrn) if mrn else None
    zone = ctx.zone((patient or {}).get("center"))
    return ctx.render("refill.html", status_code=status_code, values=values,
                      field_errors=field_errors, pump=pump, patient=patient, patient_mrn=mrn,
                      delivery=_delivery_or_none(ctx, values), zone=zone,
                      zone_now=input_value(ctx.now, zone), idempotency_key=str(uuid.uuid4()))


@router.get("/refill", response_class=HTMLResponse)
def refill_form(ctx: CtxDep, pump: str = "", appointment: str = "", fill_type: str = "",
                delivery: str = "") -> HTMLResponse:
    """The refill form, prefilled from a worklist row; the chemo bag's order id is left for the
    nurse to scan (the appointment's order is shown beside it, to compare)."""
    values = {"pump_serial": pump.strip(), "appointment_id": appointment,
              "fill_type": fill_type or FillType.SALINE, "delivery_id": "",
              "expected_delivery_id": delivery.strip(), "performed_at": "",
              "residual_volume_ml": "", "fill_volume_ml": "", "notes": "", "patient_confirmed": ""}
    return _refill_page(ctx, values, {})


def _float_or_error(raw: str, name: str, errors: dict[str, str]) -> float | None:
    try:
        value = float(raw.replace(",", "."))
    except (ValueError, AttributeError):
        errors[name] = "Enter a number of millilitres, e.g. 2.5"
        return None
    if value != value or value in (float("inf"), float("-inf")):
        errors[name] = "Enter a number of millilitres, e.g. 2.5"
        return None
    return value


def _refill_checks(ctx: Ctx, values: dict[str, str]
                   ) -> tuple[dict[str, str], dict[str, Any], ZoneInfo]:
    """What the dashboard checks before asking scheduling: each field there and readable, the
    patient confirmed, the scanned bag this appointment's order. The errors, the body, and the
    zone of the patient's centre."""
    errors: dict[str, str] = {}
    if not values["pump_serial"]:
        errors["pump_serial"] = "Enter the pump's serial number"
    pump = _pump_or_none(ctx, values["pump_serial"])
    mrn = (pump or {}).get("patient_mrn")
    patient = _patients(ctx, [mrn]).get(mrn) if mrn else None
    zone = ctx.zone((patient or {}).get("center"))
    typed = parse_local(values["performed_at"], zone)
    if typed.error:
        errors["performed_at"] = typed.error
    residual = _float_or_error(values["residual_volume_ml"], "residual_volume_ml", errors)
    fill = _float_or_error(values["fill_volume_ml"], "fill_volume_ml", errors)
    if values["fill_type"] not in [f.value for f in FillType]:
        errors["fill_type"] = "Choose chemo or saline"
    if mrn and values["patient_confirmed"] != mrn:
        errors["patient_confirmed"] = ("Check the patient's name and birth date against the "
                                       "wristband, then tick the box to confirm")
    scanned, expected = values["delivery_id"], values["expected_delivery_id"]
    if (values["fill_type"] == FillType.CHEMO and scanned and expected
            and scanned.casefold() != expected.casefold()):
        errors["delivery_id"] = (f"This bag's order ({scanned}) is not the order for this "
                                 f"appointment ({expected}). Do not use this bag: check the "
                                 "patient and call the pharmacy.")
    body: dict[str, Any] = {"pump_serial": values["pump_serial"], "residual_volume_ml": residual,
                            "fill_volume_ml": fill, "fill_type": values["fill_type"]}
    if typed.utc is not None:
        body["performed_at"] = iso_z(typed.utc)
    if values["appointment_id"]:
        body["appointment_id"] = values["appointment_id"]
    if scanned:
        body["delivery_id"] = scanned
    if values["notes"].strip():
        body["notes"] = values["notes"].strip()
    return errors, body, zone


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
                  patient_confirmed: Annotated[str, Form()] = "",
                  idempotency_key: Annotated[str, Form()] = "") -> HTMLResponse:
    """Record a refill through the scheduling API; its field errors come back beside the fields."""
    values = {"pump_serial": pump_serial.strip(), "performed_at": performed_at,
              "residual_volume_ml": residual_volume_ml, "fill_volume_ml": fill_volume_ml,
              "fill_type": fill_type, "appointment_id": appointment_id,
              "delivery_id": delivery_id.strip(),  # a scanner may add a newline or spaces
              "expected_delivery_id": expected_delivery_id.strip(), "notes": notes,
              "patient_confirmed": patient_confirmed}
    field_errors, body, zone = _refill_checks(ctx, values)
    status_code = 422
    if not field_errors:
        try:
            refill = ctx.api.post("scheduling", "/v1/refills", body,
                                  idempotency_key=idempotency_key or None)
        except ApiError as exc:
            field_errors = exc.field_errors(zone) if exc.status == 422 else {}
            status_code = exc.status if 400 <= exc.status < 500 else 502
            unplaced = {k: v for k, v in field_errors.items()
                        if k not in (*REFILL_FIELDS, "appointment_id")}
            if exc.status != 422 or not field_errors:
                ctx.errors.append(exc.banner())
            elif unplaced:
                ctx.errors.append(plain_unplaced(unplaced))
        else:
            mrn = refill.get("patient_mrn")
            patient = _patients(ctx, [mrn]).get(mrn) if mrn else None
            return ctx.render("refill_done.html", status_code=201, refill=refill, patient=patient,
                              abnormal=refill.get("flow_abnormal") is True,
                              next_appointment=refill.get("next_appointment"))
    return _refill_page(ctx, values, field_errors, status_code)


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
    # a pump scheduling never saw implanted (in stock, say) has no readings: nothing to report
    readings = ctx.attempt(lambda: ctx.api.items("scheduling", f"/v1/pumps/{path}/flow-readings"),
                           [], missing_ok=True)
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
    zone = ctx.zone(center_of({"patient": patient, "pump": pump}) or ctx.only_center())
    # no readings (a pump in stock): no trend to ask for, and scheduling's 404 is no problem
    trend = ctx.attempt(lambda: ctx.api.get("scheduling", f"/v1/pumps/{path}/flow-readings",
                                            limit=1).get("trend"), missing_ok=True) if readings else None
    chart = flow_chart(readings, float(labeled) if labeled is not None else None, zone=zone,
                       trend=trend)
    refills = ctx.attempt(lambda: ctx.api.get("scheduling", "/v1/refills", pump_serial=serial,
                                              limit=10).get("items", []), [], missing_ok=True)
    latest = next((r for r in refills
                   if r.get("status", RefillStatus.RECORDED) == RefillStatus.RECORDED), None)
    return ctx.render("pump.html", serial=serial, pump=pump, patient=patient, readings=readings,
                      history=history, chart=chart, next_appointment=next_appointment,
                      open_alerts=open_alerts, refills=refills, zone=zone,
                      implanted=(pump or {}).get("status") == PumpStatus.IMPLANTED,
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


def _alert_list(ctx: Ctx, status: str, center: str) -> dict[str, Any]:
    """What the alert list shows: the alerts and their patients."""
    center = _center(ctx, center)
    alerts = _alerts(ctx, status, center)
    return {"alerts": alerts, "status": status, "center": center,
            "patients": _patients(ctx, (a.get("patient_mrn") for a in alerts))}


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(ctx: CtxDep, status: str = "open", center: str = "") -> HTMLResponse:
    """Alerts as cards, refreshing by themselves every few seconds."""
    shown = _alert_list(ctx, status, center)
    return ctx.render("alerts.html", centers=_centers(ctx, shown["center"]), **shown)


@router.get("/alerts/table", response_class=HTMLResponse)
def alerts_table(ctx: CtxDep, status: str = "open", center: str = "") -> HTMLResponse:
    """The alert list alone, for the page's polling."""
    return ctx.render("_alerts_table.html", **_alert_list(ctx, status, center))


def _alert_and_patient(ctx: Ctx, alert_id: str) -> tuple[dict[str, Any] | None, Any]:
    alert = ctx.attempt(lambda: ctx.api.get("alerts", f"/v1/alerts/{quote(alert_id, safe='')}"))
    mrn = (alert or {}).get("patient_mrn")
    return alert, _patients(ctx, [mrn]).get(mrn) if mrn else None


def _alert_zone(ctx: Ctx, alert: dict[str, Any] | None, patient: Any) -> ZoneInfo:
    return ctx.zone(center_of({"alert": alert, "patient": patient}))


@router.get("/alerts/{alert_id}", response_class=HTMLResponse)
def alert_page(ctx: CtxDep, alert_id: str, n: str = "") -> HTMLResponse:
    """One alert with its timeline and pages: where the on-call link lands (`n`, the page whose
    link was opened, is marked seen; a page that cannot be is no reason not to show the alert)."""
    if n:
        with contextlib.suppress(ApiError):
            ctx.api.post("alerts", f"/v1/notifications/{quote(n, safe='')}/seen", {})
    alert, patient = _alert_and_patient(ctx, alert_id)
    notifications = ctx.attempt(lambda: ctx.api.items("alerts", "/v1/notifications",
                                                      alert_id=alert_id), []) if alert else []
    # acknowledging from the link acknowledges its page (only a page of this alert: a stale or
    # mistyped link must not make the acknowledgement fail)
    via = n if any(p.get("id") == n for p in notifications) else ""
    return ctx.render("alert.html", alert=alert, alert_id=alert_id, notifications=notifications,
                      patient=patient, details=detail_facts((alert or {}).get("details"),
                                                            _alert_zone(ctx, alert, patient)),
                      via_page=via, acknowledgers=page_acknowledgers((alert or {}).get("timeline")),
                      status_code=200 if alert else 404)


def _resolve_page(ctx: Ctx, alert_id: str, *, back: str, resolution: str = "",
                  field_errors: dict[str, str] | None = None, status_code: int = 200) -> HTMLResponse:
    alert, patient = _alert_and_patient(ctx, alert_id)
    return ctx.render("alert_resolve.html", alert=alert, patient=patient, back=sess.safe_next(back),
                      resolution=resolution, field_errors=field_errors or {},
                      status_code=status_code if alert else 404)


@router.get("/alerts/{alert_id}/resolve", response_class=HTMLResponse)
def alert_resolve_form(ctx: CtxDep, alert_id: str, back: str = "/alerts") -> HTMLResponse:
    """Resolving asks what was done: the reason goes into the alert's record."""
    return _resolve_page(ctx, alert_id, back=back)


def _alert_action(ctx: Ctx, alert_id: str, action: str, body: dict[str, Any], back: str,
                  status: str, center: str) -> Response:
    path = quote(alert_id, safe="")
    field_errors: dict[str, str] = {}
    try:
        ctx.api.post("alerts", f"/v1/alerts/{path}/{action}", body)
        ctx.flash.append(f"Alert {'acknowledged' if action == 'ack' else 'resolved'}.")
    except ApiError as exc:
        field_errors = exc.field_errors() if exc.status == 422 else {}
        if not field_errors.get("resolution"):
            ctx.errors.append(exc.banner())
    if is_htmx(ctx.request):
        return ctx.render("_alerts_table.html", **_alert_list(ctx, status, center))
    if action == "resolve" and (ctx.errors or field_errors):
        return _resolve_page(ctx, alert_id, back=back, resolution=body.get("resolution", ""),
                             field_errors=field_errors, status_code=409 if ctx.errors else 422)
    if ctx.errors:
        alert, patient = _alert_and_patient(ctx, alert_id)
        return ctx.render("alert.html", alert=alert, alert_id=alert_id, notifications=[],
                          patient=patient, details=detail_facts((alert or {}).get("details"),
                                                                _alert_zone(ctx, alert, patient)),
                          status_code=409)
    return see_other(sess.safe_next(back))


@router.post("/alerts/{alert_id}/ack", response_model=None)
def alert_ack(ctx: CtxDep, alert_id: str, note: Annotated[str, Form()] = "",
              back: Annotated[str, Form()] = "/alerts", status: Annotated[str, Form()] = "open",
              center: Annotated[str, Form()] = "",
              notification_id: Annotated[str, Form()] = "") -> Response:
    """Acknowledge an alert in one click (from a page's link: that page is acknowledged too)."""
    body: dict[str, Any] = {"note": note.strip()} if note.strip() else {}
    if notification_id:
        body["notification_id"] = notification_id
    return _alert_action(ctx, alert_id, "ack", body, back, status, center)


@router.post("/alerts/{alert_id}/resolve", response_model=None)
def alert_resolve(ctx: CtxDep, alert_id: str, resolution: Annotated[str, Form()] = "",
                  back: Annotated[str, Form()] = "/alerts", status: Annotated[str, Form()] = "open",
                  center: Annotated[str, Form()] = "") -> Response:
    """Resolve an alert with what was done (required)."""
    if not resolution.strip():
        return _resolve_page(ctx, alert_id, back=back, status_code=422, field_errors={
            "resolution": "Say what was done before resolving (e.g. refilled, patient called)"})
    return _alert_action(ctx, alert_id, "resolve", {"resolution": resolution.strip()}, back,
                         status, center)


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
                field_errors["udi"] = plain_unplaced(field_errors)
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
                      field_errors={}, idempotency_key=str(uuid.uuid4()), confirm=False,
                      past=_past_recalls(ctx))


def _past_recalls(ctx: Ctx) -> list[dict[str, Any]]:
    recalls: list[dict[str, Any]] = ctx.attempt(
        lambda: ctx.api.items("inventory", "/v1/recalls", max_items=50), [])
    return recalls


@router.post("/recall", response_class=HTMLResponse)
def recall_submit(ctx: CtxDep, model_code: Annotated[str, Form()] = "",
                  lot_numbers: Annotated[str, Form()] = "", reason: Annotated[str, Form()] = "",
                  action: Annotated[str, Form()] = "preview",
                  idempotency_key: Annotated[str, Form()] = "") -> HTMLResponse:
    """Preview the pumps a recall names; `issue` asks for confirmation (with the preview),
    `confirm` issues it and lists the implanted ones to follow up."""
    models = ctx.attempt(lambda: ctx.api.items("inventory", "/v1/pump-models"), [])
    values = {"model_code": model_code, "lot_numbers": lot_numbers, "reason": reason}
    lots = parse_lots(lot_numbers)
    field_errors: dict[str, str] = {}
    if not model_code:
        field_errors["model_code"] = "Choose the recalled model"
    if not lots:
        field_errors["lot_numbers"] = "Enter at least one lot number"
    if action in ("issue", "confirm") and not reason.strip():
        field_errors["reason"] = "Give the reason (e.g. the manufacturer's notice)"
    preview = result = None
    if not field_errors and action == "confirm":
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
                      idempotency_key=idempotency_key if preview is not None else str(uuid.uuid4()),
                      confirm=action == "issue" and preview is not None, past=_past_recalls(ctx))
