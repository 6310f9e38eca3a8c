"""FHIR R4 (4.0.1) read API plumbing shared by the services (CONTRACT.md, FHIR R4 read API).

Each service declares its interactions on a `FhirApi` (`@api.read(type)`, `@api.search(type,
params)`); `mount_fhir` serves them under `/fhir/R4` with `GET /fhir/R4/metadata`, a
CapabilityStatement built from exactly those declarations. Answers are `application/fhir+json`;
every error under `/fhir/` (401, 403, 404, 422, 413, 500, ...) is an OperationOutcome, whatever
raised it (the JSON API keeps its problem+json). Searches answer a `searchset` Bundle paged by
keyset with the services' signed cursors (`_count`, `_cursor`; the `next` link carries both).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import ColumnElement, and_
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import CurrentUser
from shared.errors import PROBLEM_JSON, Invalid, NotFound
from shared.pagination import MAX_CURSOR_LENGTH, MAX_LIMIT, CursorCodec, Page, PageParams
from shared.settings import Settings

FHIR_JSON = "application/fhir+json"
FHIR_BASE = "/fhir/R4"
FHIR_VERSION = "4.0.1"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
ATC = "http://www.whocc.no/atc"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
DEFAULT_COUNT = 50
PUBLICATION_ACTIVE = "active"  # FHIR PublicationStatus (of the CapabilityStatement)
T = TypeVar("T")

# --------------------------------------------------------------------------- ids and systems

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_KEEP = re.compile(r"[A-Za-z0-9\-]")
_ESCAPED = re.compile(r"\.([0-9A-F]{2})")


def fhir_id(key: str) -> str:
    """A resource id for one of our keys (FHIR ids are `[A-Za-z0-9-.]{1,64}`): letters, digits
    and `-` stay, any other character becomes `.` and its two hex digits (`MRN_1` → `MRN.5F1`),
    so the mapping is reversible and most keys (`MRN-1`, UUIDs) read the same."""
    return "".join(c if _KEEP.fullmatch(c) else "".join(f".{b:02X}" for b in c.encode())
                   for c in key)


def key_of(resource_id: str) -> str | None:
    """The key a resource id names (the inverse of `fhir_id`), or None when it names none."""
    if not _FHIR_ID.fullmatch(resource_id):
        return None
    parts = _ESCAPED.split(resource_id)  # text, hex, text, hex, ..., text
    raw_bytes = b"".join(bytes([int(p, 16)]) if i % 2 else p.encode()
                         for i, p in enumerate(parts))
    try:
        raw = raw_bytes.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if fhir_id(raw) != resource_id:  # a stray `.`, lowercase hex, or a non-canonical spelling
        return None
    return raw


@dataclass(frozen=True)
class Systems:
    """The URIs of our own code systems, identifier systems and extensions, and where each
    service's FHIR base is (references across services are absolute)."""

    base: str
    mrn_systems: dict[str, str] = field(default_factory=dict)
    service_urls: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> Systems:
        return cls(base=settings.fhir_system_base.rstrip("/"),
                   mrn_systems=dict(settings.fhir_mrn_systems),
                   service_urls={s: settings.service_url(s).rstrip("/")
                                 for s in ("inventory", "scheduling", "alerts")})

    def code_system(self, name: str) -> str:
        return f"{self.base}/CodeSystem/{name}"

    def extension(self, name: str) -> str:
        return f"{self.base}/StructureDefinition/{name}"

    def identifier_system(self, name: str) -> str:
        return f"{self.base}/sid/{name}"

    def mrn_system(self, center: str | None) -> str:
        """The centre's MRN system (HAI_FHIR_MRN_SYSTEMS), else ours for that centre."""
        if center and center in self.mrn_systems:
            return self.mrn_systems[center]
        return self.identifier_system("mrn/" + quote(center or "unknown", safe=""))

    def url(self, service: str, resource_type: str, key: str) -> str:
        return f"{self.service_urls[service]}{FHIR_BASE}/{resource_type}/{fhir_id(key)}"

    def patient_ref(self, mrn: str, center: str | None = None) -> dict[str, Any]:
        """A reference to a patient, served by scheduling: its URL and its MRN."""
        return {"reference": self.url("scheduling", "Patient", mrn), "type": "Patient",
                "identifier": {"system": self.mrn_system(center), "value": mrn}}

    def device_ref(self, serial: str) -> dict[str, Any]:
        """A reference to a pump, served by inventory: its URL and its serial number."""
        return {"reference": self.url("inventory", "Device", serial), "type": "Device",
                "identifier": {"system": self.identifier_system("pump-serial"), "value": serial}}


# --------------------------------------------------------------------------- datatypes

def instant(moment: datetime) -> str:
    """A FHIR instant/dateTime in UTC (`2026-11-26T14:00:00Z`)."""
    text = moment.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def quantity(value: float, ucum: str, unit: str | None = None) -> dict[str, Any]:
    """A UCUM quantity."""
    return {"value": _number(value), "unit": unit or ucum, "system": UCUM, "code": ucum}


def _number(value: float) -> float | int:
    rounded = round(float(value), 6)
    return int(rounded) if rounded.is_integer() else rounded


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def concept(*codings: dict[str, Any], text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": list(codings)}
    if text:
        out["text"] = text
    return out


def base64_text(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --------------------------------------------------------------------------- errors

ISSUE_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found",
               405: "not-supported", 409: "conflict", 413: "too-costly", 415: "not-supported",
               422: "invalid", 429: "throttled", 500: "exception", 503: "transient"}


def operation_outcome(status: int, detail: str,
                      errors: Iterable[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An OperationOutcome for an error answer: one issue per bad field, else one for the detail."""
    code = ISSUE_CODES.get(status, "exception" if status >= 500 else "processing")
    issues = [{"severity": "error", "code": code,
               "details": {"text": str(e.get("field"))},
               "diagnostics": f"{e.get('field')}: {e.get('message')}"}
              for e in errors or () if e.get("field")]
    if not issues:
        issues = [{"severity": "error", "code": code, "diagnostics": detail or str(status)}]
    return {"resourceType": "OperationOutcome", "issue": issues}


class FhirErrors:
    """Under `/fhir/`, turn every problem+json answer (from a route, the token check, the body
    limit, the URL guard or the 500 guard) into an OperationOutcome with the same status and
    headers. Outermost, so that nothing within answers past it."""

    def __init__(self, app: ASGIApp, prefix: str = "/fhir/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def send_wrapper(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = MutableHeaders(raw=list(message.get("headers", [])))
                if headers.get("content-type", "").startswith(PROBLEM_JSON):
                    start = message  # hold it until the body is whole
                    return
                await send(message)
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            await _send_outcome(start, b"".join(chunks), send)

        await self.app(scope, receive, send_wrapper)


async def _send_outcome(start: Message, body: bytes, send: Send) -> None:
    status = int(start["status"])
    try:
        problem = json.loads(body)
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    errors = problem.get("errors") if isinstance(problem.get("errors"), list) else None
    outcome = operation_outcome(status, str(problem.get("detail", "")), errors)
    payload = json.dumps(outcome, separators=(",", ":")).encode()
    headers = MutableHeaders(raw=list(start.get("headers", [])))
    headers["content-type"] = FHIR_JSON
    headers["content-length"] = str(len(payload))
    await send({"type": "http.response.start", "status": status, "headers": headers.raw})
    await send({"type": "http.response.body", "body": payload, "more_body": False})


class FhirResponse(JSONResponse):
    media_type = FHIR_JSON


# --------------------------------------------------------------------------- search parameters

SearchType = Literal["token", "reference", "date", "string", "number", "quantity", "uri"]


@dataclass(frozen=True)
class SearchParam:
    """One search parameter a search supports, as the CapabilityStatement lists it."""

    name: str
    type: SearchType
    documentation: str


PAGING_PARAMS = frozenset({"_count", "_cursor"})


def reference_key(value: str, resource_type: str, name: str) -> str:
    """The key a reference parameter names: `Type/id`, an absolute URL ending so, or a bare id."""
    text = value.strip()
    if "/" in text:
        head, _, tail = text.rstrip("/").rpartition("/")
        if not (head == resource_type or head.endswith("/" + resource_type)):
            raise Invalid(name, f"must reference a {resource_type} (`{resource_type}/id` or its id)")
        text = tail
    key = key_of(text)
    if key is None:
        raise Invalid(name, f"not a {resource_type} id")
    return key


def token(value: str) -> tuple[str | None, str]:
    """A token parameter: `system|code` or `code` (system None when not given)."""
    if "|" in value:
        system, _, code = value.partition("|")
        return system, code
    return None, value


def token_codes(value: str | None, allowed: Sequence[str], name: str) -> list[str] | None:
    """The codes of a token parameter (comma-separated: any of them), each one of `allowed`."""
    if value is None:
        return None
    codes = [token(part)[1] for part in value.split(",")]
    bad = [c for c in codes if c not in allowed]
    if bad:
        raise Invalid(name, f"{bad[0]!r} is not one of {', '.join(allowed)}")
    return codes


_DATE = re.compile(r"(?P<prefix>eq|ne|gt|lt|ge|le|sa|eb|ap)?(?P<value>\d{4}(-\d{2}(-\d{2}(T.+)?)?)?)")


def date_range(value: str, name: str) -> tuple[str, datetime, datetime]:
    """A date parameter: its prefix and the half-open range of instants its value covers (a
    year, a month, a day in UTC, or one instant: a time must carry its zone)."""
    match = _DATE.fullmatch(value.strip())
    if match is None:
        raise Invalid(name, "not a FHIR date: [prefix]YYYY[-MM[-DD[Thh:mm:ss+zz:zz]]]")
    prefix, text = match.group("prefix") or "eq", match.group("value")
    if prefix not in ("eq", "gt", "lt", "ge", "le"):
        raise Invalid(name, f"the prefix {prefix!r} is not supported (eq, gt, ge, lt, le)")
    try:
        if "T" in text:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                raise Invalid(name, "a time must carry its zone (Z or +hh:mm)")
            return prefix, moment, moment + timedelta(microseconds=1)
        parts = [int(p) for p in text.split("-")]
        if len(parts) == 1:
            start = datetime(parts[0], 1, 1, tzinfo=UTC)
            return prefix, start, start.replace(year=parts[0] + 1)
        if len(parts) == 2:
            start = datetime(parts[0], parts[1], 1, tzinfo=UTC)
            year, month = divmod(parts[1], 12)
            return prefix, start, datetime(parts[0] + year, month + 1, 1, tzinfo=UTC)
        day = date(parts[0], parts[1], parts[2])
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return prefix, start, start + timedelta(days=1)
    except (ValueError, OverflowError) as exc:
        raise Invalid(name, f"not a date: {exc}") from exc


def date_conditions(column: Any, values: Sequence[str] | None, name: str) -> list[ColumnElement[bool]]:
    """SQL conditions for a date parameter (repeated: all of them hold)."""
    out: list[ColumnElement[bool]] = []
    for value in values or ():
        prefix, start, end = date_range(value, name)
        if prefix == "eq":
            out.append(and_(column >= start, column < end))
        elif prefix == "ge":
            out.append(column >= start)
        elif prefix == "gt":
            out.append(column >= end)
        elif prefix == "le":
            out.append(column < end)
        else:  # lt
            out.append(column < start)
    return out


# --------------------------------------------------------------------------- paging and bundles

async def fhir_page(
    request: Request,
    count: Annotated[int, Query(alias="_count", ge=1, le=MAX_LIMIT, description="page size")] = DEFAULT_COUNT,
    cursor: Annotated[str | None, Query(alias="_cursor", max_length=MAX_CURSOR_LENGTH,
                                        description="opaque: from the `next` link")] = None,
) -> PageParams:
    """The page asked for; a cursor this service did not sign is refused here (422)."""
    runtime = getattr(request.app.state, "runtime", None)
    codec = CursorCodec.from_settings(runtime.settings) if runtime is not None else None
    params = PageParams(limit=count, cursor=cursor, codec=codec)
    if cursor is not None:
        try:
            params.cursor_codec.decode(cursor)
        except Invalid as exc:
            raise Invalid("_cursor", exc.errors[0]["message"] if exc.errors else "invalid") from exc
    return params


FhirPageDep = Annotated[PageParams, Depends(fhir_page)]


def fhir_base_url(request: Request) -> str:
    """This service's FHIR base as the caller reached it."""
    return str(request.base_url).rstrip("/") + FHIR_BASE


def searchset(request: Request, resources: Sequence[dict[str, Any]],
              next_cursor: str | None) -> FhirResponse:
    """A `searchset` Bundle of one page, with its `self` link and, when more follow, `next`."""
    base = fhir_base_url(request)
    links = [{"relation": "self", "url": str(request.url)}]
    if next_cursor is not None:
        links.append({"relation": "next",
                      "url": str(request.url.include_query_params(_cursor=next_cursor))})
    bundle = {
        "resourceType": "Bundle", "type": "searchset", "link": links,
        "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
                   "search": {"mode": "match"}} for r in resources],
    }
    return FhirResponse(bundle)


def page_resources(page: Page[T], to_resource: Callable[[T], dict[str, Any]]) -> list[dict[str, Any]]:
    return [to_resource(item) for item in page.items]


def resource_key(resource_id: str, resource_type: str) -> str:
    """The key of a read's id; 404 when the id cannot name one of ours."""
    key = key_of(resource_id)
    if key is None:
        raise NotFound(f"no {resource_type} {resource_id}")
    return key


# --------------------------------------------------------------------------- declarations

def _json_shape(resource_type: str, required: Sequence[str]) -> dict[str, Any]:
    return {"type": "object", "required": ["resourceType", *required],
            "properties": {"resourceType": {"type": "string", "enum": [resource_type]}},
            "additionalProperties": True}


def _answer(description: str, resource_type: str, *required: str) -> dict[str, Any]:
    """The OpenAPI description of one fhir+json answer."""
    return {"description": description,
            "content": {FHIR_JSON: {"schema": _json_shape(resource_type, required)}}}


ERROR_ANSWERS: dict[int | str, dict[str, Any]] = {
    401: _answer("missing, expired or invalid bearer token", "OperationOutcome", "issue"),
    403: _answer("the token carries no known role", "OperationOutcome", "issue"),
    422: _answer("bad search parameter or cursor; each issue names one", "OperationOutcome",
                 "issue"),
}
READ_ANSWERS: dict[int | str, dict[str, Any]] = {
    **ERROR_ANSWERS, 404: _answer("no such resource", "OperationOutcome", "issue")}


@dataclass
class ResourceSupport:
    """What is supported of one resource type: read, and search with which parameters."""

    type: str
    read: bool = False
    search: bool = False
    params: list[SearchParam] = field(default_factory=list)
    documentation: str = ""


async def _known_parameters_only(request: Request) -> None:
    """Refuse a search parameter the route does not support (422 naming it), rather than answer
    as if it had been applied (FHIR's strict handling)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = _query_names(dependant)
    for name in request.query_params:
        if name not in known:
            raise Invalid(name, "not a search parameter of this resource (see /fhir/R4/metadata)")


def _query_names(dependant: Any) -> set[str]:
    """The query parameters a route reads, its dependencies' included."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


class FhirApi:
    """One service's FHIR interactions, declared with `read` and `search`; `capability` lists
    exactly those."""

    def __init__(self, service: str, title: str) -> None:
        self.service = service
        self.title = title
        self.router = APIRouter(tags=["FHIR R4"], default_response_class=FhirResponse,
                                dependencies=[Depends(_known_parameters_only)])
        self.resources: dict[str, ResourceSupport] = {}

        @self.router.get("/metadata", response_class=FhirResponse, summary="CapabilityStatement",
                         responses={200: _answer("what this service supports",
                                                 "CapabilityStatement", "fhirVersion"),
                                    **ERROR_ANSWERS})
        def metadata(request: Request, _: CurrentUser) -> FhirResponse:
            """What this service's FHIR API supports: exactly the routes it serves."""
            runtime = request.app.state.runtime
            return FhirResponse(self.capability(fhir_base_url(request), runtime.clock.now()))

    def _support(self, resource_type: str) -> ResourceSupport:
        return self.resources.setdefault(resource_type, ResourceSupport(type=resource_type))

    def read(self, resource_type: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare and route `GET /{type}/{id}`."""
        self._support(resource_type).read = True
        return self.router.get(f"/{resource_type}/{{resource_id}}", response_class=FhirResponse,
                               summary=f"read {resource_type}", responses={
                                   200: _answer(f"the {resource_type}", resource_type, "id"),
                                   **READ_ANSWERS})

    def search(self, resource_type: str, params: Sequence[SearchParam],
               documentation: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare and route `GET /{type}?params` (a searchset Bundle)."""
        support = self._support(resource_type)
        support.search, support.params, support.documentation = True, list(params), documentation
        return self.router.get(f"/{resource_type}", response_class=FhirResponse,
                               summary=f"search {resource_type}", responses={
                                   200: _answer("a searchset Bundle", "Bundle", "type"),
                                   **ERROR_ANSWERS})

    def capability(self, base_url: str, now: datetime) -> dict[str, Any]:
        """The CapabilityStatement of exactly the declared interactions."""
        resources = []
        for support in sorted(self.resources.values(), key=lambda s: s.type):
            interactions = ([{"code": "read"}] if support.read else []) + (
                [{"code": "search-type"}] if support.search else [])
            entry: dict[str, Any] = {"type": support.type, "interaction": interactions}
            if support.documentation:
                entry["documentation"] = support.documentation
            if support.search:
                entry["searchParam"] = [{"name": p.name, "type": p.type,
                                         "documentation": p.documentation}
                                        for p in support.params]
            resources.append(entry)
        return {
            "resourceType": "CapabilityStatement",
            "status": PUBLICATION_ACTIVE,
            "date": instant(now),
            "publisher": "HAI pump safety services",
            "kind": "instance",
            "software": {"name": f"HAI {self.service}"},
            "implementation": {"description": f"{self.title}: FHIR R4 read API", "url": base_url},
            "fhirVersion": FHIR_VERSION,
            "format": [FHIR_JSON],
            "rest": [{
                "mode": "server",
                "documentation": "Read-only. Searches answer a searchset Bundle, paged with "
                                 "`_count` (1-500, default 50) and the `next` link; a search "
                                 "parameter not listed here is refused (422).",
                "security": {
                    "service": [concept(coding(
                        "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "OAuth", "OAuth"))],
                    "description": "A bearer token (JWT) with one of the roles nurse, "
                                   "pharmacist, oncologist, biomed, oncall, admin, service: "
                                   "the same tokens and read rights as the JSON API.",
                },
                "resource": resources,
            }],
        }


def mount_fhir(app: FastAPI, api: FhirApi) -> None:
    """Serve `api` under /fhir/R4, and answer errors there as OperationOutcome."""
    app.include_router(api.router, prefix=FHIR_BASE)
    app.add_middleware(FhirErrors)
