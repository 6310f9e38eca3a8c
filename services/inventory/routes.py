"""Inventory's HTTP API (thin: parse, call the service, shape the answer)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import Response

from services.inventory import reports, service
from services.inventory.lifecycle import Move
from services.inventory.schemas import (
    ExplantRequest,
    HistoryEntry,
    ImplantRequest,
    PumpCreate,
    PumpFilters,
    PumpModelCreate,
    PumpModelRead,
    PumpRead,
    ReasonRequest,
    RecallCreate,
    RecallRead,
    ReleaseRequest,
)
from shared.audit import ReadAuditDep
from shared.auth import CurrentUser, Principal, require_roles
from shared.contracts.vocabulary import PumpStatus
from shared.idempotency import IdempotencyDep
from shared.pagination import Page, PageDep
from shared.reports import FormatParam, FromParam, ToParam, answer, period
from shared.schemas import IsoDate
from shared.text import Centre, Key
from shared.web import UnitOfWorkRoute, UowDep

router = APIRouter(tags=["inventory"], route_class=UnitOfWorkRoute)

Admin = Annotated[Principal, Depends(require_roles())]  # admin only
Biomed = Annotated[Principal, Depends(require_roles("biomed"))]
Implanter = Annotated[Principal, Depends(require_roles("biomed", "oncologist"))]

CREATED: dict[int | str, dict[str, Any]] = {201: {"description": "created"}, 409: {"description": "conflict"},
           422: {"description": "invalid"}}
MOVED: dict[int | str, dict[str, Any]] = {404: {"description": "unknown pump"},
         409: {"description": "move not allowed; the detail names the current status"}}


@router.get("/pump-models")
def list_pump_models(_: CurrentUser, uow: UowDep, page: PageDep) -> Page[PumpModelRead]:
    """The pump model catalogue."""
    return service.list_models(uow=uow, page=page)


@router.post("/pump-models", status_code=201, response_model=PumpModelRead, responses=CREATED)
def create_pump_model(body: PumpModelCreate, user: Admin, uow: UowDep,
                      idem: IdempotencyDep) -> Response:
    """Add a pump model to the catalogue (admin)."""
    return idem.run(uow, body, lambda: service.create_model(uow=uow, actor=user.sub, data=body))


@router.post("/pumps", status_code=201, response_model=PumpRead, responses=CREATED)
def register_pump(body: PumpCreate, user: Biomed, uow: UowDep, idem: IdempotencyDep) -> Response:
    """Register a received pump from its GS1 UDI or from its fields."""
    return idem.run(uow, body, lambda: service.register_pump(uow=uow, actor=user.sub, data=body))


@router.get("/pumps")
def list_pumps(
    uow: UowDep,
    audit: ReadAuditDep,
    page: PageDep,
    status: Annotated[PumpStatus | None, Query()] = None,
    model_code: Key | None = None,
    lot_number: Key | None = None,
    patient_mrn: Key | None = None,
    expiring_before: Annotated[IsoDate | None, Query(description="expiry date strictly before")] = None,
) -> Page[PumpRead]:
    """Pumps, filtered, by serial number."""
    filters = PumpFilters(status=status, model_code=model_code, lot_number=lot_number,
                          patient_mrn=patient_mrn, expiring_before=expiring_before)
    return audit.page(service.list_pumps(uow=uow, filters=filters, page=page),
                      ident=lambda p: p.serial_number)


@router.get("/pumps/{serial}", responses={404: {"description": "unknown pump"}})
def get_pump(serial: Key, uow: UowDep, audit: ReadAuditDep) -> PumpRead:
    """One pump (the read of its patient, if implanted, is audited)."""
    return audit.item(service.get_pump(uow=uow, serial=serial), ident=lambda p: p.serial_number)


@router.get("/pumps/{serial}/history", responses={404: {"description": "unknown pump"}})
def pump_history(serial: Key, _: CurrentUser, uow: UowDep, page: PageDep) -> Page[HistoryEntry]:
    """The pump's device history, oldest first."""
    return service.history(uow=uow, serial=serial, page=page)


@router.post("/pumps/{serial}/implant", responses=MOVED)
def implant_pump(serial: Key, body: ImplantRequest, user: Implanter, uow: UowDep) -> PumpRead:
    """Record the pump implanted in a patient."""
    return service.implant(uow=uow, actor=user.sub, serial=serial, data=body)


@router.post("/pumps/{serial}/explant", responses=MOVED)
def explant_pump(serial: Key, body: ExplantRequest, user: Implanter, uow: UowDep) -> PumpRead:
    """Record the pump removed from its patient."""
    return service.explant(uow=uow, actor=user.sub, serial=serial,
                           explanted_at=body.explanted_at, reason=body.reason)


@router.post("/pumps/{serial}/quarantine", responses=MOVED)
def quarantine_pump(serial: Key, body: ReasonRequest, user: Biomed, uow: UowDep) -> PumpRead:
    """Take a stock pump out of use until released."""
    return service.change_status(uow=uow, actor=user.sub, serial=serial, move=Move.QUARANTINE,
                                 reason=body.reason)


@router.post("/pumps/{serial}/release", responses=MOVED)
def release_pump(serial: Key, user: Biomed, uow: UowDep,
                 body: Annotated[ReleaseRequest | None, Body()] = None) -> PumpRead:
    """Return a quarantined pump to stock."""
    return service.change_status(uow=uow, actor=user.sub, serial=serial, move=Move.RELEASE,
                                 reason=body.reason if body else None)


@router.post("/pumps/{serial}/retire", responses=MOVED)
def retire_pump(serial: Key, body: ReasonRequest, user: Biomed, uow: UowDep) -> PumpRead:
    """Take a pump out of service for good."""
    return service.change_status(uow=uow, actor=user.sub, serial=serial, move=Move.RETIRE,
                                 reason=body.reason)


@router.post("/recalls", status_code=201, response_model=RecallRead, responses=CREATED)
def issue_recall(body: RecallCreate, user: Biomed, uow: UowDep, idem: IdempotencyDep) -> Response:
    """Recall lots of a model: quarantine their stock, name their implanted pumps."""
    return idem.run(uow, body, lambda: service.issue_recall(uow=uow, actor=user.sub, data=body))


@router.get("/recalls")
def list_recalls(_: CurrentUser, uow: UowDep, page: PageDep) -> Page[RecallRead]:
    """Every recall, newest first."""
    return service.list_recalls(uow=uow, page=page)


@router.get("/recalls/{recall_id}", responses={404: {"description": "unknown recall"}})
def get_recall(recall_id: Key, _: CurrentUser, uow: UowDep) -> RecallRead:
    """One recall."""
    return service.get_recall(uow=uow, recall_id=recall_id)


# ---------------------------------------------------------------- the registry

@router.get("/reports/pumps", tags=["reports"], response_model=reports.PumpStatusReport,
            responses={200: {"content": {"text/csv": {}}}})
def pump_status_report(request: Request, _: CurrentUser, uow: UowDep,
                       center: Centre | None = None,
                       format: FormatParam = None) -> Response | reports.PumpStatusReport:
    """Pumps by status per centre, as of now, with the consortium's rows (`center` `*`); JSON,
    or CSV with `Accept: text/csv` or `?format=csv`."""
    report = reports.pumps_by_status(uow=uow, center=center)
    return answer(request, format, report, rows="rows",
                  columns=tuple(reports.PumpStatusRow.model_fields), filename="pumps-by-status")


@router.get("/reports/explants", tags=["reports"], response_model=reports.ExplantReport,
            responses={200: {"content": {"text/csv": {}}}})
def explant_report(request: Request, _: CurrentUser, uow: UowDep,
                   from_month: FromParam = None, to_month: ToParam = None,
                   center: Centre | None = None,
                   format: FormatParam = None) -> Response | reports.ExplantReport:
    """Explants per centre, month and reason, with the consortium's rows (`center` `*`)."""
    start, end = period(from_month, to_month, now=uow.now())
    report = reports.explants_by_reason(uow=uow, start=start, end=end, center=center)
    return answer(request, format, report, rows="rows",
                  columns=tuple(reports.ExplantRow.model_fields),
                  filename=f"explants-{report.from_month}-{report.to_month}")
