"""`Idempotency-Key` on every creating POST: the same key and body replay the first answer and
create nothing new; the same key with another body is a 409. And two nurses recording a refill
for the same appointment at the same moment (PostgreSQL, real threads): one wins, one gets 409.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from shared.errors import PROBLEM_JSON
from shared.events import EventType
from tests import helpers
from tests.helpers import Harness, auth, start, test_settings
from tests.security import stories

ADMIN = auth("admin", sub="idem-admin")
Setup = Callable[[Harness, Any, stories.Call], tuple[dict[str, Any], dict[str, Any]]]


def _admin_call(harness: Harness) -> stories.Call:
    def call(method: str, template: str, path: str, body: Any) -> Any:
        r = harness.client.request(method, path, json=body, headers=ADMIN)
        assert r.status_code in (200, 201), f"{method} {path}: {r.status_code} {r.text}"
        return r.json()
    return call


def _no_setup(body: dict[str, Any], other: dict[str, Any]) -> Setup:
    return lambda harness, bus, call: (body, other)


def _therapy(harness: Harness, bus: Any, call: stories.Call):
    call("POST", "/v1/patients", "/v1/patients", stories.patient_body())
    helpers.emit(harness, bus, EventType.PUMP_IMPLANTED, stories.implanted())
    body = stories.therapy_body()
    return body, {**body, "start_on": "2026-11-20"}


def _refill(harness: Harness, bus: Any, call: stories.Call):
    _, appt = stories.therapy_ready(harness, bus, call)
    stories.dispatched(harness, appt)
    body = stories.refill_body(appt)
    return body, {**body, "residual_volume_ml": 3.0}


# path → (service, what to do first and the two bodies)
CREATING: dict[str, tuple[str, Setup]] = {
    "/v1/pump-models": ("inventory", _no_setup(stories.pump_model_body("IDEM-1"),
                                               {**stories.pump_model_body("IDEM-1"), "name": "x"})),
    "/v1/pumps": ("inventory", _no_setup(stories.pump_body("IDEM-SN1"),
                                         {**stories.pump_body("IDEM-SN1"), "location": "shelf"})),
    "/v1/recalls": ("inventory", _no_setup(stories.recall_body(),
                                           {**stories.recall_body(), "reason": "other"})),
    "/v1/patients": ("scheduling", _no_setup(stories.patient_body("MRN-IDEM"),
                                             {**stories.patient_body("MRN-IDEM"), "weight_kg": 71})),
    "/v1/therapies": ("scheduling", _therapy),
    "/v1/refills": ("scheduling", _refill),
    "/v1/silences": ("alerts", _no_setup(stories.silence_body(), stories.silence_body("other"))),
}


def _footprint(harness: Harness) -> tuple[int, int]:
    """How many audit entries and outbox events the service holds."""
    platform = harness.runtime.platform
    with harness.runtime.engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(platform.audit)).scalar_one(),
                conn.execute(select(func.count()).select_from(platform.outbox)).scalar_one())


@pytest.mark.parametrize("path", sorted(CREATING))
def test_a_replayed_key_returns_the_first_answer_and_another_body_is_409(path, tmp_path):
    service, setup = CREATING[path]
    harness, bus = start(service, test_settings(tmp_path))
    body, other = setup(harness, bus, _admin_call(harness))
    headers = {**ADMIN, "Idempotency-Key": f"key-{path}"}

    first = harness.client.post(path, json=body, headers=headers)
    assert first.status_code == 201, first.text
    after_first = _footprint(harness)

    replay = harness.client.post(path, json=body, headers=headers)
    assert replay.status_code == 201, replay.text
    assert replay.json() == first.json()
    assert replay.headers.get("idempotent-replayed") == "true"
    assert _footprint(harness) == after_first, "the replay created something"

    clash = harness.client.post(path, json=other, headers=headers)
    assert clash.status_code == 409, clash.text
    assert clash.headers["content-type"].startswith(PROBLEM_JSON)
    assert "Idempotency-Key" in clash.json()["detail"]
    assert _footprint(harness) == after_first, "the refused request created something"


def test_every_creating_post_is_covered():
    """Each POST answering 201 in the OpenAPI is in CREATING (read from the route table)."""
    from services.alerts.routes import router as alerts
    from services.inventory.routes import router as inventory
    from services.scheduling.routes import router as scheduling
    creating = {route.path for router in (inventory, scheduling, alerts) for route in router.routes
                if "POST" in getattr(route, "methods", ()) and route.status_code == 201}
    assert {f"/v1{p}" for p in creating} == set(CREATING)


def test_two_concurrent_refills_for_one_appointment_one_wins_one_is_409(pg_database, tmp_path):
    settings = test_settings(tmp_path, scheduling_database_url=pg_database("idem_refill"))
    harness, bus = start("scheduling", settings)
    try:
        _, appt = stories.therapy_ready(harness, bus, _admin_call(harness))
        stories.dispatched(harness, appt)
        barrier = threading.Barrier(2)
        answers: list[Any] = [None, None]

        def nurse(i: int) -> None:
            body = {**stories.refill_body(appt), "residual_volume_ml": 2.0 + i}
            barrier.wait()
            answers[i] = harness.client.post("/v1/refills", json=body,
                                             headers=auth("nurse", sub=f"nurse-{i}"))

        threads = [threading.Thread(target=nurse, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        codes = sorted(a.status_code for a in answers)
        assert codes == [201, 409], [a.text for a in answers]
        loser = next(a for a in answers if a.status_code == 409)
        assert loser.json()["current_status"] == "completed"
        refills = harness.client.get("/v1/refills", headers=ADMIN).json()["items"]
        assert len(refills) == 1
    finally:
        harness.runtime.engine.dispose()
