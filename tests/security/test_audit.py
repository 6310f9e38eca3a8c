"""Every write leaves its actor, its time and what changed in the service's audit trail.

Each service's story performs every writing route of its OpenAPI once, each as a caller of
its own (`sub`); after each, the audit_log must hold a new entry by that caller, stamped with
the service clock's time, with non-empty changes. A writing route the story does not perform
fails the test, so a new route cannot escape the check.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from tests.helpers import auth, start, test_settings
from tests.security.stories import STORIES

WRITES = {"post", "put", "patch", "delete"}


def _writing_routes(client) -> set[tuple[str, str]]:
    spec = client.get("/openapi.json").json()
    return {(method.upper(), path) for path, ops in spec["paths"].items()
            for method in ops if method in WRITES}


@pytest.mark.parametrize("name", sorted(STORIES))
def test_every_write_is_audited_with_its_actor_time_and_changes(name, tmp_path):
    harness, bus = start(name, test_settings(tmp_path))
    audit = harness.runtime.platform.audit
    performed: set[tuple[str, str]] = set()
    failures: list[str] = []

    def last_id() -> int:
        with harness.runtime.engine.connect() as conn:
            return int(conn.execute(select(func.max(audit.c.id))).scalar() or 0)

    def call(method: str, template: str, path: str, body: Any) -> Any:
        sub = f"auditor-{len(performed)}-{method.lower()}{template.replace('/', '.')}"
        before = last_id()
        r = harness.client.request(method, path, json=body, headers=auth("admin", sub=sub))
        assert r.status_code in (200, 201), f"{method} {path}: {r.status_code} {r.text}"
        performed.add((method, template))
        with harness.runtime.engine.connect() as conn:
            rows = conn.execute(select(audit).where(audit.c.id > before)).all()
        mine = [row for row in rows if row.actor == sub]
        if not mine:
            failures.append(f"{method} {template}: no audit entry by {sub} "
                            f"(new entries: {[(r.actor, r.action) for r in rows]})")
        for row in mine:
            if row.at != harness.clock.now():
                failures.append(f"{method} {template}: audit time {row.at} is not the clock's")
            if not row.changes or not isinstance(row.changes, dict):
                failures.append(f"{method} {template}: {row.action} records no changes")
            if not (row.action and row.entity_type and row.entity_id):
                failures.append(f"{method} {template}: {row.action} names no entity")
        return r.json()

    STORIES[name](harness, bus, call)
    missing = _writing_routes(harness.client) - performed
    assert not missing, f"the {name} story does not perform {sorted(missing)}"
    assert not failures, "\n".join(failures)
