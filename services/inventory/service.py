"""Inventory's domain operations."""

from __future__ import annotations

from sqlalchemy import select

from services.inventory.models import PumpModel
from services.inventory.schemas import PumpModelRead
from shared.db import UnitOfWork
from shared.pagination import Page, PageParams, paginate


def list_models(*, uow: UnitOfWork, page: PageParams) -> Page[PumpModelRead]:
    """The catalogue of pump models."""
    return paginate(uow.session, select(PumpModel), keys=[PumpModel.code], params=page,
                    to_item=PumpModelRead.model_validate)
