"""`hai backup`/`restore` hand pg_dump/pg_restore a libpq URI: a multi-host database URL (a
primary and its standby) keeps both hosts, in libpq's form."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from sqlalchemy.engine import make_url

from shared.backup import _libpq


def test_a_multi_host_url_becomes_libpq_host_and_port_lists():
    uri, env = _libpq(make_url("postgresql+psycopg://hai:pw@/hai_s?host=db1:5432"
                               "&host=db2:5433&target_session_attrs=read-write"))
    query = parse_qs(urlsplit(uri).query)
    assert query == {"host": ["db1,db2"], "port": ["5432,5433"],
                     "target_session_attrs": ["read-write"]}
    assert "pw" not in uri and env["PGPASSWORD"] == "pw"


def test_a_single_host_url_is_unchanged():
    uri, _ = _libpq(make_url("postgresql+psycopg://hai:pw@db1:5432/hai_s"))
    assert uri == "postgresql://hai@db1:5432/hai_s"
