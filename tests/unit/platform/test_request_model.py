"""Request bodies refuse misspelt fields and booleans posing as numbers (422 naming the field)."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import AwareDatetime, ValidationError

from shared.schemas import RequestModel
from tests.helpers import auth, start_service, test_settings


class Fill(RequestModel):
    fill_volume_ml: float
    flagged: bool = False
    note: str | None = None


def test_a_boolean_is_not_a_volume():
    with pytest.raises(ValidationError, match="boolean is not accepted"):
        Fill(fill_volume_ml=True)  # type: ignore[arg-type]
    assert Fill(fill_volume_ml=30, flagged=True).fill_volume_ml == 30.0


def test_a_misspelt_field_is_refused_not_dropped():
    with pytest.raises(ValidationError, match="Extra inputs"):
        Fill.model_validate({"fill_volume": 30, "fill_volume_ml": 30})


def test_through_the_api(tmp_path):
    h = start_service("scheduling", test_settings(tmp_path))
    body = {"mrn": "M-1", "given_name": "A", "family_name": "B", "birth_date": "1960-01-01",
            "weight_kg": 70, "center": "C", "height_cm": True}
    r = h.client.post("/v1/patients", json=body, headers=auth("nurse"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "height_cm"
    body.pop("height_cm")
    r = h.client.post("/v1/patients", json={**body, "weight": 80}, headers=auth("nurse"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "weight"


class Dated(RequestModel):
    performed_at: AwareDatetime
    start_on: date | None = None


def test_a_number_is_not_a_timestamp_or_a_date():
    with pytest.raises(ValidationError, match="ISO 8601"):
        Dated.model_validate({"performed_at": 1764165600})
    with pytest.raises(ValidationError, match="ISO 8601"):
        Dated.model_validate({"performed_at": "2026-11-26T14:00:00Z", "start_on": "20261126"})
    ok = Dated.model_validate({"performed_at": "2026-11-26T14:00:00Z", "start_on": "2026-11-26"})
    assert ok.start_on == date(2026, 11, 26)


def test_query_timestamps_and_dates_are_iso_only(tmp_path):
    sch = start_service("scheduling", test_settings(tmp_path))
    assert sch.client.get("/v1/appointments", params={"due_before": "299"},
                          headers=auth("nurse")).status_code == 422
    assert sch.client.get("/v1/appointments", params={"due_before": "2026-11-26T00:00:00Z"},
                          headers=auth("nurse")).status_code == 200
    inv = start_service("inventory", test_settings(tmp_path))
    assert inv.client.get("/v1/pumps", params={"expiring_before": "20261126"},
                          headers=auth("nurse")).status_code == 422
    assert inv.client.get("/v1/pumps", params={"expiring_before": "2026-11-26"},
                          headers=auth("nurse")).status_code == 200


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+03:00", "9999-12-31T23:00:00-03:00",
                                  "1899-12-31T23:59:59Z", "2200-01-01T00:00:00Z"])
def test_a_timestamp_outside_the_plausible_span_is_refused(when):
    # found by schemathesis: 0001-01-01T00:00+03:00 overflowed on its way to UTC (a 500)
    with pytest.raises(ValidationError, match="out of range"):
        Dated.model_validate({"performed_at": when})
    with pytest.raises(ValidationError, match="out of range"):
        Dated.model_validate({"performed_at": "2026-11-26T14:00:00Z", "start_on": when[:10]})
    assert Dated.model_validate({"performed_at": "1900-01-01T00:00:00Z",
                                 "start_on": "2199-12-31"}).start_on == date(2199, 12, 31)


def test_an_implausible_timestamp_is_a_422_through_the_api(tmp_path):
    sch = start_service("scheduling", test_settings(tmp_path))
    r = sch.client.post("/v1/refills", headers=auth("nurse"), json={
        "pump_serial": "SN-1", "performed_at": "0001-01-01T00:00:00+03:00",
        "residual_volume_ml": 0, "fill_volume_ml": 30, "fill_type": "chemo"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "performed_at"
    assert sch.client.get("/v1/appointments", params={"due_before": "0001-01-01T00:00:00+03:00"},
                          headers=auth("nurse")).status_code == 422
