"""`GET /v1/centers`: the centres a filter offers, from scheduling's patients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers import Harness, auth, start
from tests.helpers import test_settings as settings_for
from tests.unit.scheduling.scheduling_support import NURSE, patient


def check_centers(h: Harness) -> None:
    """Distinct centres by code with their patient counts, paginated, for every role."""
    assert h.client.get("/v1/centers", headers=NURSE).json() == {"items": [], "next_cursor": None}
    for i, centre in enumerate(["C1", "C1", "Zentrum Süd", "B2", "C1"]):
        patient(h, f"MRN{i}", center=centre)
    answer = h.client.get("/v1/centers", headers=auth("pharmacist")).json()
    assert answer == {"items": [{"code": "B2", "patients": 1}, {"code": "C1", "patients": 3},
                                {"code": "Zentrum Süd", "patients": 1}], "next_cursor": None}
    first = h.client.get("/v1/centers", params={"limit": 2}, headers=NURSE).json()
    assert [c["code"] for c in first["items"]] == ["B2", "C1"] and first["next_cursor"]
    rest = h.client.get("/v1/centers", params={"limit": 2, "cursor": first["next_cursor"]},
                        headers=NURSE).json()
    assert rest == {"items": [{"code": "Zentrum Süd", "patients": 1}], "next_cursor": None}
    forged: Any = h.client.get("/v1/centers", params={"cursor": "x.y"}, headers=NURSE)
    assert forged.status_code == 422 and forged.json()["errors"][0]["field"] == "cursor"
    assert h.client.get("/v1/centers").status_code == 401


def test_centers_on_sqlite(tmp_path: Path) -> None:
    h, _ = start("scheduling", settings_for(tmp_path))
    check_centers(h)
