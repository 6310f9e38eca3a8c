"""Inventory's HTTP API (thin: parse, call the service, shape the answer)."""

from __future__ import annotations

from fastapi import APIRouter

from services.inventory import service
from services.inventory.schemas import PumpModelRead
from shared.auth import CurrentUser
from shared.pagination import Page, PageDep
from shared.web import UowDep

router = APIRouter(tags=["inventory"])


@router.get("/pump-models")
def list_pump_models(_: CurrentUser, uow: UowDep, page: PageDep) -> Page[PumpModelRead]:
    """The pump model catalogue."""
    return service.list_models(uow=uow, page=page)
