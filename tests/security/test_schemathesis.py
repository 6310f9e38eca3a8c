"""Every operation of every service's OpenAPI, fuzzed by schemathesis with an admin token, on
PostgreSQL: never a 5xx, and every answer (status, content type, body) is one the OpenAPI
documents.

Each service is seeded first through its API and its events (a pump implanted in a patient,
a therapy with its appointment, delivery and refill, an on-call rota and an alert), and the
real identifiers are fed into the generated cases by a `flatmap_case` hook, half of the time,
so the fuzzing reaches past the 404s into the routes' own logic. Valid inputs (positive mode)
and invalid ones (negative mode) are generated per operation; then the stateful phase chains
operations along the OpenAPI links (schemathesis infers most; the pump and on-call ones are
added here) with the same identifiers.

The operations are driven through Hypothesis directly rather than `@schema.parametrize()`:
schemathesis's lazy pytest fixture loader does not work with the pytest this repo pins.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import Failure, FailureGroup

from shared.events import EventType
from tests import helpers
from tests.factories import T0, flow_recorded
from tests.helpers import Harness, auth, test_settings
from tests.security import stories

# cases per operation and mode, and stateful scenarios per service: about a minute in all
MAX_EXAMPLES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 8}
STATEFUL_SCENARIOS = 15
STATEFUL_STEPS = 6

# A schema-valid request may still be refused with a 422 naming the field: an opaque cursor
# that is not one of ours, a GTIN no model has, an implant date in the future, a silence that
# ends before it starts. The contract calls those bad input; the default check would not.
CONFIG = SchemathesisConfig.from_dict({
    "checks": {
        "positive_data_acceptance": {
            "expected-statuses": ["2XX", "401", "403", "404", "409", "422"],
        },
    },
})

Ids = dict[str, list[str]]


def _admin_call(harness: Harness) -> stories.Call:
    def call(method: str, _template: str, path: str, body: Any) -> Any:
        response = harness.client.request(method, path, json=body, headers=auth("admin", sub="seed"))
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        return response.json()
    return call


def _get(harness: Harness, path: str, **params: str) -> list[dict[str, Any]]:
    response = harness.client.get(path, params=params, headers=auth("admin", sub="seed"))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def seed_inventory(harness: Harness, bus: Any) -> Ids:
    """Pumps in stock, implanted and recalled; the recall."""
    call = _admin_call(harness)
    call("POST", "", "/v1/pumps", stories.pump_body("FZ-SN1"))
    call("POST", "", "/v1/pumps", stories.pump_body("FZ-SN2"))
    call("POST", "", "/v1/pumps/FZ-SN2/implant", {
        "patient_mrn": "FZ-MRN-1", "implanted_at": (T0 - timedelta(days=1)).isoformat(),
        "center": "north", "surgeon": "dr-s"})
    call("POST", "", "/v1/pumps", stories.pump_body("FZ-SN3", lot="FZ-LOT-R"))
    recall = call("POST", "", "/v1/recalls", stories.recall_body("FZ-LOT-R"))
    serials = ["FZ-SN1", "FZ-SN2", "FZ-SN3"]
    models = [m["code"] for m in _get(harness, "/v1/pump-models")]
    return {"serial": serials, "serial_number": serials, "pump_serial": serials,
            "recall_id": [str(recall["recall_id"])], "model_code": models,
            "patient_mrn": ["FZ-MRN-1"], "lot_number": ["LOT-A", "FZ-LOT-R"]}


def seed_scheduling(harness: Harness, bus: Any) -> Ids:
    """A patient with an implanted pump, a therapy, its appointment, delivery and a refill."""
    call = _admin_call(harness)
    therapy, appointment = stories.therapy_ready(harness, bus, call, "FZ-SN1", "FZ-MRN-1")
    stories.dispatched(harness, appointment)
    refill = call("POST", "", "/v1/refills", stories.refill_body(appointment, "FZ-SN1"))
    helpers.emit(harness, bus, EventType.PUMP_IMPLANTED, stories.implanted("FZ-SN2", "FZ-MRN-2"))
    call("POST", "", "/v1/patients", stories.patient_body("FZ-MRN-2"))
    appointments = [a["id"] for a in _get(harness, "/v1/appointments")]
    deliveries = [d["id"] for d in _get(harness, "/v1/deliveries")]
    return {"mrn": ["FZ-MRN-1", "FZ-MRN-2"], "patient_mrn": ["FZ-MRN-1", "FZ-MRN-2"],
            "serial": ["FZ-SN1", "FZ-SN2"], "pump_serial": ["FZ-SN1", "FZ-SN2"],
            "therapy_id": [str(therapy["id"])], "appointment_id": appointments,
            "delivery_id": deliveries, "refill_id": [str(refill["id"])]}


def seed_alerts(harness: Harness, bus: Any) -> Ids:
    """An on-call rota, a silence, and an alert raised by an abnormal flow."""
    call = _admin_call(harness)
    call("PUT", "", "/v1/oncall/north", stories.log_oncall())
    call("POST", "", "/v1/silences", stories.silence_body())
    helpers.emit(harness, bus, EventType.FLOW_RECORDED, flow_recorded("FZ-SN1", mrn="MRN-AUD-1"))
    alerts = [a["id"] for a in _get(harness, "/v1/alerts")]
    assert alerts
    return {"alert_id": alerts, "center": ["north", "south"], "pump_serial": ["FZ-SN1"],
            "patient_mrn": ["MRN-AUD-1"]}


SEEDS: dict[str, Callable[[Harness, Any], Ids]] = {
    "inventory": seed_inventory, "scheduling": seed_scheduling, "alerts": seed_alerts}

# links schemathesis does not infer by itself (the pump's id is `serial_number`, the path's `serial`)
SERIAL = {"serial": "$response.body#/serial_number"}
LINKS: dict[tuple[str, str, str], dict[str, tuple[str, str, dict[str, str]]]] = {
    ("/v1/pumps", "post", "201"): {
        name: (path, method, SERIAL) for name, path, method in [
            ("GetPump", "/v1/pumps/{serial}", "get"),
            ("GetPumpHistory", "/v1/pumps/{serial}/history", "get"),
            ("ImplantPump", "/v1/pumps/{serial}/implant", "post"),
            ("QuarantinePump", "/v1/pumps/{serial}/quarantine", "post"),
            ("RetirePump", "/v1/pumps/{serial}/retire", "post"),
        ]},
    ("/v1/pumps/{serial}/implant", "post", "200"): {
        "ExplantPump": ("/v1/pumps/{serial}/explant", "post", SERIAL)},
    ("/v1/pumps/{serial}/quarantine", "post", "200"): {
        "ReleasePump": ("/v1/pumps/{serial}/release", "post", SERIAL)},
    ("/v1/oncall/{center}", "put", "200"): {
        name: (path, "get", {"center": "$request.path.center"}) for name, path in [
            ("GetOncall", "/v1/oncall/{center}"), ("GetOncallNow", "/v1/oncall/{center}/now")]},
}


def with_links(raw: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with the links above added where their operations exist."""
    for (path, method, status), links in LINKS.items():
        response = raw["paths"].get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is None:
            continue
        for name, (target, target_method, parameters) in links.items():
            operation_id = raw["paths"][target][target_method]["operationId"]
            response.setdefault("links", {})[name] = {"operationId": operation_id,
                                                      "parameters": parameters}
    return raw


def feed_real_ids(schema: Any, ids: Ids) -> None:
    """Half of the generated cases get real identifiers where a parameter or body field is named
    like one (schemathesis re-labels a negative case that becomes valid)."""

    def flatmap_case(context: Any, case: Any) -> Any:
        draws: dict[tuple[str, str], Any] = {}
        for where in ("path_parameters", "query", "body"):
            container = getattr(case, where)
            if isinstance(container, dict):
                for name in container:
                    if name in ids:
                        draws[(where, name)] = st.sampled_from(ids[name])
        if not draws:
            return st.just(case)

        def apply(values: dict[tuple[str, str], str]) -> Any:
            for where in ("path_parameters", "query", "body"):
                changed = {name: v for (w, name), v in values.items() if w == where}
                if changed:
                    setattr(case, where, {**getattr(case, where), **changed})
            return case

        return st.one_of(st.just(case), st.fixed_dictionaries(draws).map(apply))

    schema.hook(flatmap_case)


def _fuzz(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES[mode], deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        call_and_validate(case, headers)

    run()


def call_and_validate(case: Any, headers: dict[str, str]) -> None:
    """Send the case and run every check; an exception the app raised (the test transport
    re-raises what a server would answer 500) is reported with the request that caused it."""
    try:
        case.call_and_validate(headers=headers)
    except (Failure, FailureGroup):
        raise
    except Exception as exc:
        raise AssertionError(f"server error: {type(exc).__name__} on "
                             f"{case.as_curl_command(base_url='http://service')}") from exc


def _stateful(schema: Any, headers: dict[str, str]) -> None:
    machine = schema.as_state_machine()  # infers the links first
    assert schema.statistic.transitions.selected >= 2, "no links: the stateful phase has nothing to chain"

    class Machine(machine):  # type: ignore[misc, valid-type]
        def step(self, input: Any) -> Any:
            try:
                return super().step(input)
            except (Failure, FailureGroup):
                raise
            except Exception as exc:
                raise AssertionError(f"server error: {type(exc).__name__} on "
                                     f"{input.case.as_curl_command(base_url='http://service')}"
                                     ) from exc

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": headers}

    Machine.run(settings=settings(max_examples=STATEFUL_SCENARIOS, stateful_step_count=STATEFUL_STEPS,
                                  deadline=None, database=None,
                                  phases=[Phase.explicit, Phase.generate],
                                  suppress_health_check=list(HealthCheck)))


def _failure(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        raise exc
    return str(exc)


@pytest.mark.parametrize("name", ["inventory", "scheduling", "alerts"])
def test_every_operation_answers_as_its_openapi_says(name: str, tmp_path: Any,
                                                      pg_database: Callable[[str], str]) -> None:
    harness, bus = helpers.start(name, test_settings(
        tmp_path, **{f"{name}_database_url": pg_database(name)}))
    ids = SEEDS[name](harness, bus)
    raw = with_links(harness.client.get("/openapi.json").json())
    schema = schemathesis.openapi.from_dict(raw, config=CONFIG)
    schema.app = harness.client.app
    feed_real_ids(schema, ids)
    headers = auth("admin", sub="fuzzer")
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(operation, mode, headers)
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, operation.label  # nothing to negate
            except BaseException as exc:  # noqa: BLE001 - schemathesis raises an ExceptionGroup
                failures.append(f"{operation.label} ({mode.value}): {_failure(exc)}")
    try:
        _stateful(schema, headers)
    except BaseException as exc:  # noqa: BLE001
        failures.append(f"stateful: {_failure(exc)}")
    assert not failures, "\n\n".join(failures)
