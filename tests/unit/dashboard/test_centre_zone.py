"""Each centre's own time zone (scheduling's centre settings) on the dashboard: looked up with the
page's API client, kept a minute, `HAI_TIME_ZONE` when the centre has none or the API fails; and
the pharmacist's and biomed's typed times read in it (the clock changes included)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.dashboard.api import ApiError
from services.dashboard.biomed import action_body
from services.dashboard.localtime import CentreZones, zone_for
from services.dashboard.pharmacy import status_body
from services.dashboard.settings import DashboardSettings
from tests.factories import T0
from tests.unit.dashboard.fakes import FakeApis, client, page, sign_in

NY = ZoneInfo("America/New_York")
PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
def fake() -> FakeApis:
    return FakeApis()


def centre_settings(zone: str | None, source: str = "center") -> dict[str, Any]:
    """What `GET /v1/centers/{center}/settings` answers about the time zone."""
    return {"center": "C", "version": 1, "settings": {"time_zone": {
        "value": zone, "source": source, "default": "UTC", "default_setting": "HAI_TIME_ZONE"}}}


class FakeApi:
    """The page's API client: the centre settings it answers, and how often it was asked."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def get(self, service: str, path: str, **_params: Any) -> Any:
        assert service == "scheduling"
        self.asked.append(path)
        answer = self.answers.get(path)
        if isinstance(answer, ApiError):
            raise answer
        if answer is None:
            raise ApiError(service, 404, "Not found", "no such centre")
        return answer


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_centres_own_zone_wins_else_the_deployments() -> None:
    settings = DashboardSettings(time_zone="Europe/Paris")
    api = FakeApi({"/v1/centers/NYC/settings": centre_settings("America/New_York"),
                   "/v1/centers/DEF/settings": centre_settings("UTC", source="default"),
                   "/v1/centers/BAD/settings": centre_settings("Mars/Olympus"),
                   "/v1/centers/DOWN/settings": ApiError("scheduling", 0, "Unreachable", "x")})
    assert zone_for(settings, "NYC", api) == NY
    assert zone_for(settings, "DEF", api) == PARIS  # the centre keeps the default
    assert zone_for(settings, "BAD", api) == PARIS  # never a zone the dashboard cannot use
    assert zone_for(settings, "DOWN", api) == PARIS  # the API failing is no broken page
    assert zone_for(settings, "UNKNOWN", api) == PARIS
    assert zone_for(settings, None, api) == PARIS and zone_for(settings, "NYC") == PARIS


def test_a_centres_zone_is_kept_a_minute_and_a_failure_ten_seconds() -> None:
    settings = DashboardSettings(time_zone="Europe/Paris")
    ticks = Ticks()
    zones = CentreZones(ttl_seconds=60, failure_ttl_seconds=10, monotonic=ticks)
    api = FakeApi({"/v1/centers/NYC/settings": centre_settings("America/New_York")})
    for _ in range(5):
        assert zone_for(settings, "NYC", api, zones) == NY
    assert len(api.asked) == 1
    api.answers["/v1/centers/NYC/settings"] = centre_settings("Asia/Tokyo")
    ticks.now += 59
    assert zone_for(settings, "NYC", api, zones) == NY and len(api.asked) == 1
    ticks.now += 2
    assert zone_for(settings, "NYC", api, zones) == ZoneInfo("Asia/Tokyo") and len(api.asked) == 2
    # scheduling down: the deployment's zone meanwhile, asked again after ten seconds
    api.answers["/v1/centers/NYC/settings"] = ApiError("scheduling", 503, "Unavailable", "x")
    ticks.now += 61
    assert zone_for(settings, "NYC", api, zones) == PARIS and len(api.asked) == 3
    assert zone_for(settings, "NYC", api, zones) == PARIS and len(api.asked) == 3
    api.answers["/v1/centers/NYC/settings"] = centre_settings("America/New_York")
    ticks.now += 11
    assert zone_for(settings, "NYC", api, zones) == NY and len(api.asked) == 4


# ---------------------------------------------------------------- typed times, clocks changing

@pytest.mark.parametrize(("typed", "sent", "error"), [
    ("2026-11-09T10:00", "2026-11-09T15:00:00Z", None),  # EST: UTC−5
    ("2027-03-14T02:30", None, "does not exist"),  # spring forward: 02:00–03:00 skipped
    ("2027-03-14T03:30", "2027-03-14T07:30:00Z", None),  # EDT from then: UTC−4
    ("2026-11-01T01:30", None, "in the future"),  # fall back: the earlier 01:30 (05:30Z) is past
    ("nonsense", None, "as shown"),
    ("", None, "beyond-use date and time"),
])
def test_the_beyond_use_time_is_typed_in_the_centres_zone(typed: str, sent: str | None,
                                                          error: str | None) -> None:
    body, errors = status_body("compounded", "L1", typed, "", T0, NY)
    if error is None:
        assert not errors and body["beyond_use_at"] == sent
    else:
        assert error in errors["beyond_use_at"] and "beyond_use_at" not in body


@pytest.mark.parametrize(("typed", "sent", "error"), [
    ("2026-11-02T02:00", "2026-11-02T07:00:00Z", None),
    ("2026-11-01T01:30", "2026-11-01T05:30:00Z", None),  # passed twice: the first, EDT
    ("2026-11-01T01:30-05:00", "2026-11-01T06:30:00Z", None),  # an explicit offset says which
    ("2026-03-08T02:30", None, "does not exist"),  # spring forward
    ("2026-11-02T03:01", None, "future"),  # 08:01Z, a minute after now
])
def test_the_operations_time_is_typed_in_the_centres_zone(typed: str, sent: str | None,
                                                          error: str | None) -> None:
    pump = {"serial_number": "S1", "status": "implanted", "expiry_date": "2030-01-01"}
    body, errors = action_body("explant", {"reason": "infection", "at": typed}, pump, T0, NY)
    if error is None:
        assert not errors and body == {"reason": "infection", "explanted_at": sent}
    else:
        assert error in errors["at"]


# ---------------------------------------------------------------- pages

def _order() -> dict[str, Any]:
    return {"id": "o1", "status": "accepted", "center": "NYC", "patient_mrn": "M1",
            "pump_serial": "S1", "drugs": [], "needed_by": (T0 + timedelta(hours=5)).isoformat(),
            "beyond_use_at": "2026-11-09T15:00:00Z",
            "history": [{"status": "accepted", "at": T0.isoformat()}]}


def test_the_pharmacist_types_and_reads_the_centres_local_time(fake: FakeApis) -> None:
    fake.on("scheduling", "GET", "/v1/centers/NYC/settings", centre_settings("America/New_York"))
    fake.on("scheduling", "GET", "/v1/deliveries/o1", _order())
    fake.on("scheduling", "GET", "/v1/patients/M1", {"mrn": "M1", "center": "NYC",
                                                     "given_name": "Ann", "family_name": "Doe"})
    fake.on("scheduling", "POST", "/v1/deliveries/o1/status", _order())
    c = client(fake)  # HAI_TIME_ZONE: UTC
    sign_in(c, "pia.pharmacist", ("pharmacist",))
    shown = c.get("/deliveries/o1").text
    assert "Beyond-use date and time (local time, America/New_York)" in shown
    assert 'data-testid="beyond-use">2026-11-09 10:00 EST (UTC−05:00)<' in shown
    done = c.post("/deliveries/o1/status", data={"status": "compounded", "lot": "PH-1",
                                                 "beyond_use_at": "2026-11-09T10:00"})
    assert done.status_code == 303
    assert fake.called("scheduling", "POST", "/v1/deliveries/o1/status")[0]["beyond_use_at"] == \
        "2026-11-09T15:00:00Z"
    skipped = c.post("/deliveries/o1/status", data={"status": "compounded", "lot": "PH-1",
                                                    "beyond_use_at": "2027-03-14T02:30"})
    assert skipped.status_code == 422 and "does not exist" in skipped.text
    assert len(fake.called("scheduling", "POST", "/v1/deliveries/o1/status")) == 1
    # the centre's settings read once for all these pages (kept a minute)
    assert len(fake.called("scheduling", "GET", "/v1/centers/NYC/settings")) == 1


def test_biomed_confirms_an_implant_in_the_typed_centres_time(fake: FakeApis) -> None:
    pump = {"serial_number": "S1", "status": "in_stock", "expiry_date": "2030-01-01"}
    fake.on("scheduling", "GET", "/v1/centers/NYC/settings", centre_settings("America/New_York"))
    fake.on("inventory", "GET", "/v1/pumps/S1", pump)
    fake.on("inventory", "GET", "/v1/pumps/S1/history", page([]))
    fake.on("inventory", "POST", "/v1/pumps/S1/implant", lambda r: httpx.Response(200, json=pump))
    c = client(fake)
    sign_in(c, "bea.biomed", ("biomed",))
    first = c.get("/devices/S1").text  # no centre yet: HAI_TIME_ZONE, now in it
    assert "Date and time of the operation (local time, UTC)" in first
    assert 'value="2026-11-02T08:00"' in first
    form = {"patient_mrn": "M1", "center": "NYC", "at": "2026-11-02T02:30"}
    review = c.post("/devices/S1/implant", data=form)
    assert review.status_code == 200
    assert 'data-testid="confirm-when">2026-11-02 02:30 EST (UTC−05:00)<' in review.text
    done = c.post("/devices/S1/implant", data={**form, "step": "confirm"})
    assert done.status_code == 303
    assert fake.called("inventory", "POST", "/v1/pumps/S1/implant") == [
        {"patient_mrn": "M1", "center": "NYC", "implanted_at": "2026-11-02T07:30:00Z"}]
    # the form's default (now, in the zone its label named) stays that instant when the centre
    # typed keeps another zone: the confirmation says it in the centre's time
    review = c.post("/devices/S1/implant", data={**form, "at": "2026-11-02T08:00",
                                                 "at_zone": "UTC"})
    assert 'data-testid="confirm-when">2026-11-02 03:00 EST (UTC−05:00)<' in review.text
    assert 'name="at_zone" value="UTC"' in review.text
    for bad in ("Mars/Olympus", "UTC\x00", "../etc/passwd"):  # the centre's zone instead
        review = c.post("/devices/S1/implant", data={**form, "at_zone": bad})
        assert 'data-testid="confirm-when">2026-11-02 02:30 EST (UTC−05:00)<' in review.text


def test_the_nurses_refill_reads_the_patients_centre_zone(fake: FakeApis) -> None:
    fake.on("scheduling", "GET", "/v1/centers/PAR/settings", centre_settings("Europe/Paris"))
    fake.on("inventory", "GET", "/v1/pumps/S1", {"serial_number": "S1", "patient_mrn": "M1",
                                                 "status": "implanted"})
    fake.on("scheduling", "GET", "/v1/patients/M1", {"mrn": "M1", "center": "PAR",
                                                     "given_name": "Ann", "family_name": "Doe"})
    c = client(fake, time_zone="America/New_York")
    sign_in(c)
    text = c.get("/refill?pump=S1").text
    assert "Performed at (local time, Europe/Paris)" in text and 'value="2026-11-02T09:00"' in text
    assert "Times are local to the centre (Europe/Paris)" in text


def test_the_404_page_shows_the_menu_when_signed_in(fake: FakeApis) -> None:
    c = client(fake)
    signed_out = c.get("/no-such-page")
    assert signed_out.status_code == 404 and '<nav aria-label="Main">' not in signed_out.text
    sign_in(c, "pia.pharmacist", ("pharmacist",))
    found = c.get("/no-such-page")
    assert found.status_code == 404
    nav = found.text.split('<nav aria-label="Main">')[1].split("</nav>")[0]
    assert 'href="/deliveries"' in nav and 'href="/reports"' in nav
    assert 'href="/deliveries">Go to your start page' in found.text


def test_a_pump_in_stock_shows_no_error_and_its_centres_time(fake: FakeApis) -> None:
    fake.on("scheduling", "GET", "/v1/centers/NYC/settings", centre_settings("America/New_York"))
    fake.on("inventory", "GET", "/v1/pumps/S9", {
        "serial_number": "S9", "status": "in_stock", "center": "NYC", "expiry_date": "2030-01-01",
        "labeled_flow_ml_per_day": 1.0})
    fake.on("inventory", "GET", "/v1/pumps/S9/history", page([
        {"at": "2026-11-01T14:00:00Z", "actor": "bea", "action": "registered"}]))
    fake.on("alerts", "GET", "/v1/alerts", page([]))
    c = client(fake)  # scheduling: 404 for the readings of a pump it never saw implanted
    sign_in(c)
    text = c.get("/pumps/S9").text
    assert 'class="banner-error"' not in text and "banner-error" not in text
    assert "2026-11-01 09:00 EST" in text and "Times are local to the centre (America/New_York)" in text


def test_a_list_of_several_centres_shows_each_row_in_its_centres_time(fake: FakeApis) -> None:
    fake.on("scheduling", "GET", "/v1/centers/NYC/settings", centre_settings("America/New_York"))
    fake.on("scheduling", "GET", "/v1/centers/PAR/settings", centre_settings("Europe/Paris"))
    due = "2026-11-02T14:00:00Z"
    fake.on("scheduling", "GET", "/v1/appointments", page([
        {"id": f"a-{c}", "therapy_id": "t1", "patient_mrn": f"M-{c}", "center": c,
         "pump_serial": f"S-{c}", "fill_type": "saline", "due_at": due, "scheduled_for": None,
         "status": "scheduled", "projected_empty_at": None, "urgency": "due_today",
         "near_empty": False} for c in ("NYC", "PAR")]))
    fake.on("alerts", "GET", "/v1/alerts", page([
        {"id": "al1", "kind": "refill_overdue", "severity": "warning", "status": "firing",
         "center": "PAR", "pump_serial": "S-PAR", "summary": f"refill due {due}",
         "last_raised_at": due}]))
    c = client(fake)
    sign_in(c)
    rows = c.get("/worklist?center=").text.split("<tbody")[1]
    nyc, par = rows.split('data-serial="S-PAR"')
    assert "2026-11-02 09:00 EST" in nyc and "2026-11-02 15:00 CET" in par
    cards = c.get("/alerts").text
    assert "refill due 2026-11-02 15:00 CET" in cards and "2026-11-02 14:00 UTC" not in cards
