"""Demo data for `hai up --demo`, created through the three services' HTTP APIs.

Clearly fake people (family name "Demopatient", MRNs `DEMO-…`) and pumps (`DEMO-SN-…`, the
catalogue's demo GTINs). Safe to run again on the same databases: what exists is left alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import Any

import httpx
import structlog

from services.dashboard.settings import BACKENDS, DashboardSettings
from services.dashboard.views import iso_z
from shared.auth import ALL_CENTERS, mint_token
from shared.clock import Clock, SystemClock
from shared.contracts.vocabulary import FillType, PumpStatus, Regimen

log = structlog.get_logger(__name__)

DEMO_CENTER = "DEMO-CENTER"
INTERA_GTIN = "00812345000016"
CODMAN_GTIN = "00812345000023"
QUARANTINED_SERIAL = "DEMO-SN-0103"
EXPIRED_SERIAL = "DEMO-SN-0104"
READY_TIMEOUT_SECONDS = 60.0
IMPLANT_SEEN_TIMEOUT_SECONDS = 30.0
DEFAULT_ESCALATION_DELAY_SECONDS = 900  # `hai up --demo` passes HAI_ESCALATION_DELAY_SECONDS


class DemoError(RuntimeError):
    """The demo could not be seeded (a service did not answer, or refused)."""


def udi(gtin: str, expiry: datetime, lot: str, serial: str) -> str:
    """A GS1 element string in the human-readable form, as printed under the barcode."""
    return f"(01){gtin}(17){expiry.strftime('%y%m%d')}(10){lot}(21){serial}"


@dataclass
class DemoRefill:
    """A past refill: days before now, residual withdrawn, volume filled, fill type."""

    days_ago: float
    residual_volume_ml: float
    fill_volume_ml: float
    fill_type: FillType = FillType.SALINE


@dataclass
class DemoCase:
    """One demo patient with one implanted pump, a therapy and its refill history."""

    mrn: str
    given_name: str
    serial: str
    regimen: Regimen
    start_in_days: int
    refills: list[DemoRefill] = field(default_factory=list)
    gtin: str = INTERA_GTIN
    lot: str = "DEMO-LOT-A"
    labeled_flow_ml_per_day: float = 1.0
    weight_kg: float = 72.0
    by_udi: bool = False


def demo_cases() -> list[DemoCase]:
    """The demo patients: overdue and near empty, abnormal flow, pending delivery, due soon, routine."""
    return [
        # filled 30 days ago, saline due 16 days ago: overdue and about to run dry
        DemoCase("DEMO-0001", "Alex", "DEMO-SN-0001", Regimen.SALINE_MAINTENANCE, -30,
                 [DemoRefill(29.6, 0.0, 30.0)], by_udi=True),
        # a normal reading, then flow 30 % above its label: flow_abnormal
        DemoCase("DEMO-0002", "Blake", "DEMO-SN-0002", Regimen.SALINE_MAINTENANCE, -34,
                 [DemoRefill(33.6, 0.0, 30.0), DemoRefill(19.6, 15.72, 30.0),
                  DemoRefill(5.6, 11.8, 30.0)]),
        # FUDR therapy whose first chemo fill is due within the pharmacy lead time
        DemoCase("DEMO-0003", "Casey", "DEMO-SN-0003", Regimen.FUDR_ALTERNATING, 2,
                 gtin=CODMAN_GTIN, lot="DEMO-LOT-C", by_udi=True),
        # due in about a day and a half
        DemoCase("DEMO-0004", "Drew", "DEMO-SN-0004", Regimen.SALINE_MAINTENANCE, -13,
                 [DemoRefill(12.5, 0.0, 30.0)]),
        # routine: two normal readings, due in four days
        DemoCase("DEMO-0005", "Emery", "DEMO-SN-0005", Regimen.SALINE_MAINTENANCE, -38,
                 [DemoRefill(38.0, 0.0, 30.0), DemoRefill(24.0, 16.28, 30.0),
                  DemoRefill(10.0, 15.86, 30.0)], labeled_flow_ml_per_day=0.98),
    ]


class DemoClient:
    """The demo's HTTP calls, each with the token of the role that would make it."""

    def __init__(self, settings: DashboardSettings, clock: Clock,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.clients = {name: httpx.Client(base_url=settings.service_url(name), timeout=10.0,
                                           transport=transport) for name in BACKENDS}

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def _headers(self, sub: str, role: str) -> dict[str, str]:
        token = mint_token(sub, [role], secret=self.settings.jwt_secret, now=self.clock.now(),
                           centers=[ALL_CENTERS])  # seeds the shared stock too
        return {"Authorization": f"Bearer {token}"}

    def call(self, service: str, method: str, path: str, *, as_: tuple[str, str],
             body: Any = None, params: dict[str, Any] | None = None,
             ok: tuple[int, ...] = ()) -> httpx.Response:
        """One call; a status outside 2xx and `ok` raises DemoError."""
        response = self.clients[service].request(method, path, json=body, params=params,
                                                 headers=self._headers(*as_))
        if response.is_success or response.status_code in ok:
            return response
        raise DemoError(f"{service} {method} {path}: {response.status_code} {response.text[:300]}")

    def wait_ready(self, timeout_seconds: float = READY_TIMEOUT_SECONDS) -> None:
        """Wait until every service answers /healthz."""
        deadline = time.monotonic() + timeout_seconds
        waiting = set(BACKENDS)
        while waiting:
            for name in sorted(waiting):
                try:
                    if self.clients[name].get("/healthz").status_code == 200:
                        waiting.discard(name)
                except httpx.HTTPError:
                    pass
            if waiting and time.monotonic() > deadline:
                raise DemoError(f"services not answering /healthz: {sorted(waiting)}")
            if waiting:
                time.sleep(0.25)


NURSE = ("nora.nurse", "nurse")
BIOMED = ("bea.biomed", "biomed")
ONCOLOGIST = ("omar.oncologist", "oncologist")
ONCALL = ("otto.oncall", "oncall")


def _retry(fn: Callable[[], httpx.Response], until: Callable[[httpx.Response], bool],
           timeout_seconds: float) -> httpx.Response:
    deadline = time.monotonic() + timeout_seconds
    while True:
        response = fn()
        if until(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.3)


def seed_oncall(api: DemoClient, now: datetime, escalation_delay_seconds: int) -> None:
    """Levels 1 and 2 for the demo center, paging to the log; each member named by their login,
    so that their acknowledgement lands on their own pages."""
    midnight = datetime.combine(now.date(), dtime(0), tzinfo=UTC)
    api.call("alerts", "PUT", f"/v1/oncall/{DEMO_CENTER}", as_=ONCALL, body={
        "escalation_delay_seconds": escalation_delay_seconds,
        "levels": [
            {"members": [{"name": "otto.oncall", "channel": "log", "address": "otto.oncall"},
                         {"name": "olga.oncall", "channel": "log", "address": "olga.oncall"}],
             "rotation_start": iso_z(midnight), "shift_hours": 12},
            {"members": [{"name": "demo.supervisor", "channel": "log",
                          "address": "demo.supervisor"}],
             "rotation_start": iso_z(midnight), "shift_hours": 24},
        ],
    })


def known_pumps(api: DemoClient) -> dict[str, dict[str, Any]]:
    """The pumps inventory already has, by serial (so that seeding again asks nothing twice)."""
    answer = api.call("inventory", "GET", "/v1/pumps", as_=BIOMED, params={"limit": 500}).json()
    return {p["serial_number"]: p for p in answer["items"]}


def known_patients(api: DemoClient) -> set[str]:
    """The demo patients scheduling already has."""
    answer = api.call("scheduling", "GET", "/v1/patients", as_=NURSE,
                      params={"q": "DEMO-", "limit": 500}).json()
    return {p["mrn"] for p in answer["items"]}


def _register(api: DemoClient, pumps: dict[str, dict[str, Any]], serial: str,
              body: dict[str, Any]) -> None:
    if serial not in pumps:
        pumps[serial] = api.call("inventory", "POST", "/v1/pumps", as_=BIOMED, body=body).json()


def seed_stock(api: DemoClient, now: datetime, pumps: dict[str, dict[str, Any]]) -> None:
    """Pumps on the shelf: one expiring within weeks, one good for years, one in quarantine
    (for biomed to release or retire) and one already expired (flagged, never implanted)."""
    soon = now + timedelta(days=45)
    later = now + timedelta(days=3 * 365)
    _register(api, pumps, "DEMO-SN-0101", {
        "udi": udi(INTERA_GTIN, soon, "DEMO-LOT-S", "DEMO-SN-0101"),
        "location": "Demo pharmacy shelf 1"})
    _register(api, pumps, "DEMO-SN-0102", {
        "udi": udi(CODMAN_GTIN, later, "DEMO-LOT-T", "DEMO-SN-0102"),
        "location": "Demo pharmacy shelf 2"})
    _register(api, pumps, QUARANTINED_SERIAL, {
        "udi": udi(INTERA_GTIN, later, "DEMO-LOT-Q", QUARANTINED_SERIAL),
        "location": "Demo biomed bench"})
    _register(api, pumps, EXPIRED_SERIAL, {
        "udi": udi(INTERA_GTIN, now - timedelta(days=10), "DEMO-LOT-X", EXPIRED_SERIAL),
        "location": "Demo pharmacy shelf 1"})
    if pumps[QUARANTINED_SERIAL].get("status") == PumpStatus.IN_STOCK:
        pumps[QUARANTINED_SERIAL] = api.call(
            "inventory", "POST", f"/v1/pumps/{QUARANTINED_SERIAL}/quarantine", as_=BIOMED,
            body={"reason": "demo: dropped on the floor, to be checked"}).json()


def _model_code(api: DemoClient, gtin: str) -> str:
    models = api.call("inventory", "GET", "/v1/pump-models", as_=BIOMED).json()["items"]
    for model in models:
        if model.get("gtin") == gtin:
            return str(model["code"])
    raise DemoError(f"no pump model with the demo GTIN {gtin}")


def seed_case(api: DemoClient, case: DemoCase, now: datetime, pumps: dict[str, dict[str, Any]],
              patients: set[str]) -> bool:
    """One patient: register, implant, start the therapy, record past refills; False if it
    existed. Asks only for what is missing: seeding again sends nothing that is refused."""
    expiry = now + timedelta(days=2 * 365)
    labeled = case.labeled_flow_ml_per_day
    if case.by_udi:
        body: dict[str, Any] = {"udi": udi(case.gtin, expiry, case.lot, case.serial)}
    else:
        body = {"serial_number": case.serial, "model_code": _model_code(api, case.gtin),
                "lot_number": case.lot, "expiry_date": expiry.date().isoformat()}
    _register(api, pumps, case.serial,
              {**body, "labeled_flow_ml_per_day": labeled, "location": "Demo stock"})
    if case.mrn not in patients:
        api.call("scheduling", "POST", "/v1/patients", as_=NURSE, body={
            "mrn": case.mrn, "given_name": case.given_name, "family_name": "Demopatient",
            "birth_date": "1960-01-01", "weight_kg": case.weight_kg, "height_cm": 172,
            "sex": "female", "center": DEMO_CENTER})
        patients.add(case.mrn)
    first_event = min([now + timedelta(days=case.start_in_days)]
                      + [now - timedelta(days=r.days_ago) for r in case.refills])
    implanted_at = first_event - timedelta(days=3)
    if pumps[case.serial].get("status") == PumpStatus.IN_STOCK:
        pumps[case.serial] = api.call(
            "inventory", "POST", f"/v1/pumps/{case.serial}/implant", as_=BIOMED, body={
                "patient_mrn": case.mrn, "implanted_at": iso_z(min(implanted_at, now)),
                "surgeon": "Dr Demo Surgeon", "center": DEMO_CENTER}).json()
    existing = api.call("scheduling", "GET", "/v1/therapies", as_=NURSE,
                        params={"patient_mrn": case.mrn}).json()["items"]
    if existing:
        return False
    therapy: dict[str, Any] = {
        "patient_mrn": case.mrn, "pump_serial": case.serial, "regimen": case.regimen,
        "start_on": (now + timedelta(days=case.start_in_days)).date().isoformat(),
        "fill_volume_ml": 30.0,
    }
    if case.regimen == Regimen.FUDR_ALTERNATING:
        # centre protocol amounts (verify): demo values only
        therapy.update({"fudr_mg_per_kg_day": 0.12, "dexamethasone_mg": 20.0,
                        "heparin_units": 30000.0})
    # scheduling learns the implant from an event: wait until it has
    created = _retry(
        lambda: api.call("scheduling", "POST", "/v1/therapies", as_=ONCOLOGIST, body=therapy,
                         ok=(409,)),
        lambda r: r.status_code != 409, IMPLANT_SEEN_TIMEOUT_SECONDS)
    if created.status_code == 409:
        raise DemoError(f"scheduling did not learn of the implant of {case.serial}: {created.text[:200]}")
    for refill in case.refills:
        api.call("scheduling", "POST", "/v1/refills", as_=NURSE, body={
            "pump_serial": case.serial, "performed_at": iso_z(now - timedelta(days=refill.days_ago)),
            "residual_volume_ml": refill.residual_volume_ml,
            "fill_volume_ml": refill.fill_volume_ml, "fill_type": refill.fill_type,
            "notes": "demo refill"})
    return True


def seed(settings: DashboardSettings, *, clock: Clock | None = None,
         transport: httpx.BaseTransport | None = None,
         escalation_delay_seconds: int = DEFAULT_ESCALATION_DELAY_SECONDS) -> None:
    """Wait for the three APIs, then create the demo on-call (escalating after
    `escalation_delay_seconds`), stock, patients, therapies, refills."""
    clock = clock or SystemClock()
    api = DemoClient(settings, clock, transport)
    try:
        api.wait_ready()
        now = clock.now()
        seed_oncall(api, now, escalation_delay_seconds)
        pumps = known_pumps(api)
        patients = known_patients(api)
        seed_stock(api, now, pumps)
        created = [case.mrn for case in demo_cases() if seed_case(api, case, now, pumps, patients)]
        log.info("demo.seeded", center=DEMO_CENTER, new_cases=len(created))
    finally:
        api.close()
