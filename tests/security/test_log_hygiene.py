"""The ways a patient's MRN or name could slip into a log line under another key: a dead
letter's reason, an unexpected error's path, a validation error's rendered input."""

from __future__ import annotations

import json
import sys

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ValidationError
from structlog.testing import capture_logs

from shared.errors import install_error_handlers
from shared.events import CloudEvent, EventType
from shared.logging import format_exc_info_safely, safe_error
from shared.messaging.base import Delivery
from shared.messaging.consumer import EventConsumer
from tests.helpers import start_service, test_settings

MRN = "MRN-77"
NAME = "Lovelace"


class Flow(BaseModel):
    pump_serial: str
    measured_flow_ml_per_day: float


def _validation_error() -> ValidationError:
    try:
        Flow.model_validate({"patient_mrn": MRN, "family_name": NAME, "measured_flow_ml_per_day": "x"})
    except ValidationError as exc:
        return exc
    raise AssertionError("expected a validation error")


def test_a_validation_error_is_rendered_by_its_fields_not_its_input():
    exc = _validation_error()
    assert MRN in str(exc)  # what pydantic would have put in the log
    text = safe_error(exc)
    assert "pump_serial" in text and "measured_flow_ml_per_day" in text
    assert MRN not in text and NAME not in text
    try:
        raise RuntimeError("handling failed") from exc
    except RuntimeError:
        rendered = format_exc_info_safely(None, "error", {"exc_info": sys.exc_info()})
    assert "RuntimeError: handling failed" in rendered["exception"]
    assert "pump_serial" in rendered["exception"]
    assert MRN not in rendered["exception"] and NAME not in rendered["exception"]


def test_a_dead_letter_reason_names_fields_never_patient_values(tmp_path):
    harness = start_service("alerts", test_settings(tmp_path))
    sub = harness.runtime.subscriptions[0]
    consumer = EventConsumer(sub.queue.name, sub.queue, sub.handlers, harness.runtime.uow_factory)
    bad_data = CloudEvent.create(source="/t", type=EventType.FLOW_RECORDED,
                                 data={"patient_mrn": MRN, "family_name": NAME})
    envelope = json.loads(bad_data.to_json_bytes())
    del envelope["id"]
    bodies = [bad_data.to_json_bytes(), json.dumps(envelope).encode()]
    with capture_logs() as logs:
        outcomes = consumer.process([Delivery(body=b, routing_key="x", exchange="hai.events")
                                     for b in bodies])
    assert [o.action for o in outcomes] == ["dead_letter", "dead_letter"]
    assert "pump_serial" in (outcomes[0].reason or "") and "id" in (outcomes[1].reason or "")
    for text in [o.reason or "" for o in outcomes] + [json.dumps(e, default=str) for e in logs]:
        assert MRN not in text and NAME not in text, text


def test_an_unexpected_error_logs_the_route_template_not_the_path():
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/v1/patients/{mrn}")
    def boom(mrn: str) -> None:
        raise RuntimeError("bug")

    with capture_logs() as logs:
        r = TestClient(app, raise_server_exceptions=False).get(f"/v1/patients/{MRN}")
    assert r.status_code == 500
    [entry] = [e for e in logs if e["event"] == "request.failed"]
    assert entry["route"] == "/v1/patients/{mrn}"
    assert MRN not in json.dumps(entry, default=str)
