"""What a database error means for the caller (a race, a held lock) and how to log it safely.

PostgreSQL puts the offending values in its error text (`DETAIL: Key (mrn)=(…) already
exists`); `hide_parameters` hides only the statement's parameters. So a database error is
logged by its SQLSTATE and the names of what it concerns (constraint, table, column), never by
its message."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import DBAPIError, StatementError

UNIQUE_VIOLATION = "23505"
EXCLUSION_VIOLATION = "23P01"
LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout or NOWAIT
DEADLOCK_DETECTED = "40P01"
SERIALIZATION_FAILURE = "40001"
CONTENTION = frozenset({LOCK_NOT_AVAILABLE, DEADLOCK_DETECTED, SERIALIZATION_FAILURE})


def driver_error(exc: BaseException) -> BaseException:
    """The driver's own exception behind a SQLAlchemy one (or the exception itself)."""
    orig = getattr(exc, "orig", None) if isinstance(exc, StatementError) else None
    return orig if isinstance(orig, BaseException) else exc


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a PostgreSQL error (None for other databases and other errors)."""
    code = getattr(driver_error(exc), "sqlstate", None)
    return code if isinstance(code, str) else None


def is_unique_violation(exc: BaseException) -> bool:
    """A unique (or exclusion) constraint refused the write: someone else wrote the key first."""
    code = sqlstate(exc)
    if code is not None:
        return code in (UNIQUE_VIOLATION, EXCLUSION_VIOLATION)
    # SQLite: "UNIQUE constraint failed: patients.mrn" (names only, never values)
    return isinstance(exc, DBAPIError) and str(driver_error(exc)).startswith("UNIQUE constraint failed")


def is_contention(exc: BaseException) -> bool:
    """Another transaction holds what this one needs: a lock timeout, a deadlock, a serialization failure."""
    return sqlstate(exc) in CONTENTION


def is_db_error(exc: BaseException) -> bool:
    """An error raised by the database or its driver (whose text may carry values)."""
    if isinstance(exc, DBAPIError):
        return True
    return type(exc).__module__.startswith(("psycopg", "sqlite3"))


def _sqlite_message(exc: BaseException) -> str:
    # SQLite's messages name tables and columns, not values; one line of it is kept
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else ""


def safe_db_error(exc: BaseException) -> str:
    """`Type: name (SQLSTATE …) constraint=… table=… column=…` with no value from the database."""
    orig = driver_error(exc)
    parts = [type(exc).__name__ + ":"]
    if orig is not exc:
        parts.append(type(orig).__name__)
    code = sqlstate(orig)
    if code is not None:
        parts.append(f"(SQLSTATE {code})")
        diag: Any = getattr(orig, "diag", None)
        for label in ("constraint_name", "table_name", "column_name"):
            value = getattr(diag, label, None) if diag is not None else None
            if value:
                parts.append(f"{label.removesuffix('_name')}={value}")
    elif type(orig).__module__.startswith("sqlite3"):
        parts.append(_sqlite_message(orig))
    return " ".join(parts)


def constraint_of(exc: BaseException) -> str | None:
    """The name of the constraint a PostgreSQL error names, if any."""
    diag: Any = getattr(driver_error(exc), "diag", None)
    name = getattr(diag, "constraint_name", None) if diag is not None else None
    return name if isinstance(name, str) else None


def table_of(exc: BaseException) -> str | None:
    """The table a database error concerns: from PostgreSQL's diagnostics, or SQLite's message."""
    orig = driver_error(exc)
    diag: Any = getattr(orig, "diag", None)
    name = getattr(diag, "table_name", None) if diag is not None else None
    if isinstance(name, str):
        return name
    message = _sqlite_message(orig)
    columns = message.removeprefix("UNIQUE constraint failed: ")
    if columns != message and not columns.startswith("index "):
        return columns.split(".", 1)[0]
    return None
