"""Each service's FHIR API as its app serves it (SQLite): the CapabilityStatement lists exactly
the routes that exist and the search parameters each reads, every known role reads them all,
a token without a known role gets 403 and none 401, each as an OperationOutcome."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from shared.auth import ROLES
from shared.errors import ServerErrorGuard
from shared.fhir import FHIR_BASE, FHIR_JSON, PAGING_PARAMS, FhirErrors
from tests.fhir.validation import assert_valid
from tests.helpers import Harness, auth, start_service
from tests.helpers import test_settings as settings_for
from tests.security.test_body_limit import Upload, call

SERVICES = ("inventory", "scheduling", "alerts")


@pytest.fixture(scope="module", params=SERVICES)
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = start_service(request.param, settings_for(Path(tmp_path_factory.mktemp(request.param))))
    yield h
    h.runtime.engine.dispose()


def _query_names(dependant: Any) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


@dataclass(frozen=True)
class Served:
    path: str  # as the app serves it, prefix included
    methods: frozenset[str]
    route: APIRoute


def fhir_routes(h: Harness) -> list[Served]:
    """The app's routes under /fhir/R4 (FastAPI keeps an included router whole: walk them)."""
    app: Any = h.client.app
    out = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and (context.path or "").startswith(FHIR_BASE + "/"):
            out.append(Served(str(context.path), frozenset(context.methods or ()), route))
    return out


def served(h: Harness) -> dict[tuple[str, str], set[str]]:
    """(type, interaction) → the search parameters read, from the app's own routes."""
    out: dict[tuple[str, str], set[str]] = {}
    for route in fhir_routes(h):
        assert route.methods == {"GET"}, route.path  # read-only
        parts = route.path[len(FHIR_BASE) + 1:].split("/")
        if parts == ["metadata"]:
            continue
        interaction = "read" if len(parts) == 2 and parts[1] == "{resource_id}" else "search-type"
        assert len(parts) == (2 if interaction == "read" else 1), route.path
        params = _query_names(route.route.dependant) - PAGING_PARAMS
        out[(parts[0], interaction)] = params
    return out


def concrete(path: str) -> str:
    return path.replace("{resource_id}", "X-1")


def test_the_capability_statement_lists_exactly_the_routes(service: Harness) -> None:
    r = service.client.get(f"{FHIR_BASE}/metadata", headers=auth("nurse"))
    assert r.status_code == 200 and r.headers["content-type"].startswith(FHIR_JSON)
    statement = r.json()
    assert_valid(statement)
    assert statement["fhirVersion"] == "4.0.1" and statement["format"] == [FHIR_JSON]
    (rest,) = statement["rest"]
    listed: dict[tuple[str, str], set[str]] = {}
    for resource in rest["resource"]:
        for interaction in resource["interaction"]:
            params = {p["name"] for p in resource.get("searchParam", [])} \
                if interaction["code"] == "search-type" else set()
            listed[(resource["type"], interaction["code"])] = params
        if not any(i["code"] == "search-type" for i in resource["interaction"]):
            assert "searchParam" not in resource
    routes = served(service)
    assert routes, "no FHIR routes"
    for (kind, interaction), params in routes.items():
        if interaction == "read":
            assert params == set(), f"read {kind} reads query parameters {params}"
    assert listed == routes


def test_every_known_role_reads_every_fhir_route(service: Harness) -> None:
    for role in ROLES:
        for route in fhir_routes(service):
            r = service.client.get(concrete(route.path), headers=auth(role))
            assert r.status_code in (200, 404), (role, route.path, r.status_code, r.text)
            assert r.headers["content-type"].startswith(FHIR_JSON)
            assert_valid(r.json())


@pytest.mark.parametrize(("headers", "status", "code"), [
    ({}, 401, "login"),
    (auth("janitor"), 403, "forbidden"),
    ({"Authorization": "Bearer not-a-token"}, 401, "login"),
])
def test_without_a_read_right_every_route_answers_an_operation_outcome(
        service: Harness, headers: dict[str, str], status: int, code: str) -> None:
    for route in fhir_routes(service):
        r = service.client.get(concrete(route.path), headers=headers)
        assert r.status_code == status, (route.path, r.status_code, r.text)
        assert r.headers["content-type"].startswith(FHIR_JSON)
        outcome = r.json()
        assert_valid(outcome)
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == code
        if status == 401:
            assert r.headers["www-authenticate"].startswith("Bearer")


def test_writes_and_unknown_paths_are_operation_outcomes_too(service: Harness) -> None:
    path = concrete(fhir_routes(service)[-1].path)
    r = service.client.post(path, json={}, headers=auth("admin"))
    assert r.status_code == 405 and r.headers["content-type"].startswith(FHIR_JSON)
    assert_valid(r.json())
    r = service.client.get(f"{FHIR_BASE}/Nothing", headers=auth("admin"))
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    # and the JSON API keeps problem+json
    r = service.client.get("/v1/nothing", headers=auth("admin"))
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "chunked"])
def test_the_token_is_checked_before_a_byte_of_the_body_is_read(service: Harness,
                                                                 declare_length: bool) -> None:
    upload = Upload(chunks=800)  # 50 MiB
    status, headers, body = call(service.client.app, f"{FHIR_BASE}/metadata", upload, {},
                                 declare_length=declare_length)
    assert status == 401 and upload.pulled == 0
    assert headers["content-type"].startswith(FHIR_JSON)
    assert json.loads(body)["issue"][0]["code"] == "login"


def test_the_error_middleware_rewrites_problems_under_fhir_only() -> None:
    """A 500 from the guard (or any problem+json) under /fhir/ becomes an OperationOutcome with
    its status and headers; elsewhere, and for any other answer, nothing changes."""
    inner = FastAPI()

    @inner.get("/fhir/R4/boom")
    @inner.get("/v1/boom")
    def boom() -> None:
        raise RuntimeError("planted")

    @inner.get("/fhir/R4/fine")
    def fine() -> dict[str, str]:
        return {"resourceType": "Basic"}

    inner.add_middleware(ServerErrorGuard)  # as create_service_app and mount_fhir stack them
    inner.add_middleware(FhirErrors)
    client = TestClient(inner, raise_server_exceptions=False)
    r = client.get("/fhir/R4/boom")
    assert r.status_code == 500 and r.headers["content-type"] == FHIR_JSON
    assert r.headers["connection"] == "close"
    assert r.json()["issue"][0]["code"] == "exception"
    assert int(r.headers["content-length"]) == len(r.content)
    r = client.get("/v1/boom")
    assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
    r = client.get("/fhir/R4/fine")
    assert r.status_code == 200 and r.json() == {"resourceType": "Basic"}
