"""Request bodies refuse misspelt fields and booleans posing as numbers (422 naming the field)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

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
