"""bulk_insert on PostgreSQL: COPY with the columns' own bind processing, in the transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, select
from sqlalchemy.orm import Session

from shared.db import NAMING_CONVENTION, UTCDateTime, bulk_insert, define_platform_tables, make_engine


def test_bulk_insert_streams_rows_with_their_types_and_only_if_committed(
        pg_database: Callable[[str], str]) -> None:
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    platform = define_platform_tables(metadata)
    with_default = Table("with_default", metadata,
                         Column("id", Integer, primary_key=True, autoincrement=True),
                         Column("label", String(20), nullable=False),
                         Column("tag", String(20), nullable=False, default=lambda: "python"),
                         Column("at", UTCDateTime, nullable=False))
    engine = make_engine(pg_database("bulk"))
    metadata.create_all(engine)
    paris = timezone(timedelta(hours=1))
    at = datetime(2026, 11, 26, 13, 0, tzinfo=paris)
    rows = [{"at": at, "actor": "nurse-1", "action": "x", "entity_type": "t", "entity_id": str(i),
             "changes": {"text": "tab\t newline\n backslash\\ é", "i": i, "none": None}}
            for i in range(50)]
    try:
        with Session(engine) as session:
            bulk_insert(session, platform.audit, rows)
            session.rollback()
            assert session.scalars(select(platform.audit.c.id)).all() == []

            bulk_insert(session, platform.audit, rows)
            session.commit()
            stored = session.execute(select(platform.audit).order_by(platform.audit.c.id)).all()
            assert [r.changes for r in stored] == [r["changes"] for r in rows]
            assert {r.at for r in stored} == {datetime(2026, 11, 26, 12, 0, tzinfo=UTC)}

            with pytest.raises(ValueError, match="naive datetime refused"):
                bulk_insert(session, platform.audit, [{**rows[0], "at": datetime(2026, 1, 1)},
                                                      rows[1]])
            session.rollback()

            # a column with a Python-side default, not given: COPY would not fill it in
            bulk_insert(session, with_default, [{"label": f"l{i}", "at": at} for i in range(3)])
            session.commit()
            assert session.scalars(select(with_default.c.tag)).all() == ["python"] * 3
    finally:
        engine.dispose()
