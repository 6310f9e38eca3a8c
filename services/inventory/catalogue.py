"""The seeded demo catalogue of pump models (DOMAIN.md, The pumps).

Demo entries only: their GTINs are made-up numbers with valid GS1 check digits (the first is
the one in CONTRACT.md's example UDI), and their figures are DOMAIN.md's family values
(reservoir about 30 mL, nominal flow about 1 mL/day), to be verified against each model's IFU.
Real entries are added by an admin (`POST /v1/pump-models`).
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.inventory.models import PumpModel
from shared.db import UnitOfWorkFactory

log = structlog.get_logger(__name__)

VERIFY_NOTE = "DEMO entry: GTIN is not real; verify reservoir and nominal flow against the IFU"


@dataclass(frozen=True)
class CatalogueEntry:
    code: str
    manufacturer: str
    name: str
    gtin: str
    reservoir_ml: float
    nominal_flow_ml_per_day: float


DEMO_CATALOGUE: tuple[CatalogueEntry, ...] = (
    CatalogueEntry("DEMO-INTERA-3000", "Intera Oncology (demo)", "DEMO Intera 3000",
                   "00812345000016", 30.0, 1.0),
    CatalogueEntry("DEMO-CODMAN-3000", "Codman (demo)", "DEMO Codman 3000",
                   "00812345000023", 30.0, 1.0),
    CatalogueEntry("DEMO-SYNCHROMED-II", "Medtronic (demo)", "DEMO SynchroMed II",
                   "00812345000030", 30.0, 1.0),
)


def seed_demo_catalogue(uow_factory: UnitOfWorkFactory) -> int:
    """Add the demo models that are missing (idempotent, safe with replicas); returns how many."""
    added = 0
    for entry in DEMO_CATALOGUE:
        try:
            with uow_factory.begin() as uow:  # a start-up job: it owns (and commits) its work
                known = uow.session.execute(
                    select(PumpModel.code).where(
                        (PumpModel.code == entry.code) | (PumpModel.gtin == entry.gtin))
                ).first()
                if known is not None:
                    continue
                uow.session.add(PumpModel(
                    code=entry.code, manufacturer=entry.manufacturer, name=entry.name,
                    gtin=entry.gtin, reservoir_ml=entry.reservoir_ml,
                    nominal_flow_ml_per_day=entry.nominal_flow_ml_per_day, demo=True,
                    notes=VERIFY_NOTE, created_at=uow.now(),
                ))
                uow.audit(actor="system", action="pump_model.seeded", entity_type="pump_model",
                          entity_id=entry.code, changes={"gtin": entry.gtin, "demo": True})
        except IntegrityError:
            continue  # another replica seeded it first (the audit insert autoflushes)
        added += 1
    if added:
        log.info("inventory.catalogue_seeded", models=added)
    return added
