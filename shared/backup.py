"""Backup and restore of one service's database: pg_dump/pg_restore on PostgreSQL, SQLite's
online backup API on SQLite.

A service's database holds its outbox and inbox beside its data, so a restore brings back
which events were already announced (sent rows stay sent) and which were already consumed
(a redelivered one is ignored): exactly-once survives the restore.
"""

from __future__ import annotations

import glob
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy.engine import URL, make_url


class BackupError(RuntimeError):
    """A backup or restore that could not be done, with the reason."""


def pg_tool(name: str) -> str:
    """The path of a PostgreSQL client program (PATH first, then Debian's versioned folders)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not candidates:
        raise BackupError(f"{name} not found: install the PostgreSQL client (postgresql-client)")
    return candidates[-1]


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """A libpq connection URI without the password, and the environment that carries it
    (a password on the command line would show in the process list)."""
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    # not url.set(password=None): SQLAlchemy reads None there as "unchanged" (the password
    # stayed in the URI, on pg_dump's command line)
    plain = url.set(drivername="postgresql")._replace(password=None)
    hosts = plain.query.get("host")
    if isinstance(hosts, tuple) or (hosts and ":" in hosts):
        # SQLAlchemy's multi-host form (host=a:5432&host=b:5432) in libpq's: host=a,b&port=…
        pairs = [h.rsplit(":", 1) if ":" in h else [h, ""] for h in
                 (hosts if isinstance(hosts, tuple) else (hosts,))]
        plain = plain.update_query_dict({"host": ",".join(h for h, _ in pairs),
                                         "port": ",".join(p for _, p in pairs)})
    return plain.render_as_string(hide_password=False), env


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(url.database)


def _run(args: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackupError(f"{Path(args[0]).name} failed ({result.returncode}): "
                          f"{result.stderr.strip()[-2000:]}")


def backup(database_url: str, target: Path) -> None:
    """Write a backup of the database at `database_url` to `target`.

    PostgreSQL: `pg_dump -Fc` (custom format, compressed, restorable table by table), without
    owners or privileges, so it restores into a database owned by anyone. SQLite: a consistent
    copy by the online backup API (safe while the service writes)."""
    url = make_url(database_url)
    target.parent.mkdir(parents=True, exist_ok=True)
    if url.get_backend_name() == "postgresql":
        uri, env = _libpq(url)
        _run([pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
              f"--file={target}", f"--dbname={uri}"], env)
        return
    if url.get_backend_name() == "sqlite":
        _sqlite_copy(_sqlite_path(url), target)
        return
    raise BackupError(f"cannot back up a {url.get_backend_name()} database")


def restore(database_url: str, source: Path) -> None:
    """Restore a backup made by `backup` into the database at `database_url`.

    PostgreSQL: `pg_restore --clean --if-exists --no-owner` in one transaction (all or
    nothing); the database must exist (empty or an older copy: what the backup holds replaces
    it). SQLite: the file is replaced, page by page, by the backup's content."""
    if not source.is_file():
        raise BackupError(f"no backup at {source}")
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        uri, env = _libpq(url)
        _run([pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges",
              "--single-transaction", "--exit-on-error", f"--dbname={uri}", str(source)], env)
        return
    if url.get_backend_name() == "sqlite":
        _sqlite_copy(source, _sqlite_path(url))
        return
    raise BackupError(f"cannot restore into a {url.get_backend_name()} database")


def _sqlite_copy(source: Path, target: Path) -> None:
    if not source.is_file():
        raise BackupError(f"no SQLite database at {source}")
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
