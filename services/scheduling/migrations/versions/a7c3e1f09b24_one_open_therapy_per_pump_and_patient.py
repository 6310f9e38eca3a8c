"""one open therapy per pump and per patient

Two partial unique indexes on therapies (status active or paused): one on pump_serial, one on
patient_mrn, on PostgreSQL and SQLite alike. The database then refuses a second open therapy
whatever the timing of the requests (issue 16: two POST /v1/therapies at the same moment both
went through and the pharmacy got two chemotherapy orders).

Existing data: when some pump or patient already has more than one open therapy, the upgrade
stops with an error that lists those therapies by id (never an MRN) and changes nothing. Which
one to keep is a clinical decision (each may have sent an order to the pharmacy), so it is not
guessed here: stop the extra ones (`PATCH /v1/therapies/{id}` with `{"action": "stop"}`, which
also cancels their appointments and orders) on the running release, then upgrade again.

Revision ID: a7c3e1f09b24
Revises: 6a1f0c9e2b47
Create Date: 2026-12-01 15:25:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'a7c3e1f09b24'
down_revision: str | None = '6a1f0c9e2b47'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = "status IN ('active', 'paused')"


def _duplicates(column: str) -> list[list[str]]:
    """Therapy ids of each pump or patient with more than one open therapy, oldest first."""
    rows = op.get_bind().execute(sa.text(
        f"SELECT {column} AS owner, id FROM therapies WHERE {OPEN} AND {column} IN ("
        f"SELECT {column} FROM therapies WHERE {OPEN} GROUP BY {column} HAVING COUNT(*) > 1) "
        f"ORDER BY {column}, created_at, id")).all()
    groups: dict[str, list[str]] = {}
    for owner, therapy_id in rows:
        groups.setdefault(owner, []).append(therapy_id)
    return list(groups.values())


def upgrade() -> None:
    by_pump, by_patient = _duplicates("pump_serial"), _duplicates("patient_mrn")
    if by_pump or by_patient:
        listed = "; ".join(", ".join(ids) for ids in by_pump + by_patient)
        raise RuntimeError(
            f"cannot enforce one open therapy per pump and per patient: {len(by_pump)} pump(s) "
            f"and {len(by_patient)} patient(s) have several active or paused therapies "
            f"(therapy ids, grouped, oldest first: {listed}). Stop all but one of each group "
            "(PATCH /v1/therapies/{id} {\"action\": \"stop\"}) and run the upgrade again; "
            "nothing was changed.")
    op.create_index("uq_therapies_open_pump", "therapies", ["pump_serial"], unique=True,
                    postgresql_where=sa.text(OPEN), sqlite_where=sa.text(OPEN))
    op.create_index("uq_therapies_open_patient", "therapies", ["patient_mrn"], unique=True,
                    postgresql_where=sa.text(OPEN), sqlite_where=sa.text(OPEN))


def downgrade() -> None:
    op.drop_index("uq_therapies_open_patient", table_name="therapies")
    op.drop_index("uq_therapies_open_pump", table_name="therapies")
