"""Production refuses dev defaults; the `hai token` command mints verifiable tokens."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from shared.auth import TokenVerifier
from shared.cli import app
from shared.settings import DEV_JWT_SECRET, Settings


def test_production_refuses_the_dev_secret():
    with pytest.raises(ValidationError, match="dev secret"):
        Settings(env="production", amqp_url="amqp://x/")


def test_production_refuses_the_in_process_bus():
    with pytest.raises(ValidationError, match="in-process bus"):
        Settings(env="production", jwt_secret="a-real-secret-of-enough-length-123456")


def test_production_with_real_secret_and_broker_is_accepted():
    s = Settings(env="production", jwt_secret="a-real-secret-of-enough-length-123456",
                 amqp_url="amqp://guest:guest@127.0.0.1:5672/")
    assert s.cors_origins == []  # CORS closed by default


def test_settings_come_from_hai_variables(monkeypatch):
    monkeypatch.setenv("HAI_SWEEP_INTERVAL_SECONDS", "7")
    monkeypatch.setenv("HAI_SCHEDULING_DATABASE_URL", "postgresql+psycopg://postgres@h/db")
    s = Settings()
    assert s.sweep_interval_seconds == 7
    assert s.database_url("scheduling") == "postgresql+psycopg://postgres@h/db"


def test_hai_token_prints_a_token_the_services_accept(monkeypatch):
    monkeypatch.delenv("HAI_JWT_SECRET", raising=False)
    result = CliRunner().invoke(app, ["token", "--sub", "nina", "--role", "nurse",
                                      "--role", "oncall"])
    assert result.exit_code == 0, result.output
    principal = TokenVerifier(Settings(jwt_secret=DEV_JWT_SECRET)).verify(result.output.strip())
    assert principal.sub == "nina" and principal.roles == {"nurse", "oncall"}


def test_hai_token_refuses_unknown_role():
    result = CliRunner().invoke(app, ["token", "--sub", "x", "--role", "janitor"])
    assert result.exit_code != 0


def test_start_up_heap_is_frozen_out_of_full_collections():
    """`hai serve`, `hai worker` and `hai up` freeze what start-up built: a full collection
    does not walk it (shared/runtime.py, settle_heap)."""
    import gc
    import weakref

    from shared.runtime import settle_heap

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle only the collector frees
    gone = weakref.ref(a)
    del a, b
    try:
        settle_heap()
        assert gc.get_freeze_count() > 1000
        assert gone() is None  # start-up garbage is collected first, not frozen
    finally:
        gc.unfreeze()
