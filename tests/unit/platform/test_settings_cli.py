"""Production refuses dev defaults; the `hai token` command mints verifiable tokens."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from services.cli import app
from services.settings import HaiSettings
from shared.auth import TokenVerifier
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
    s = HaiSettings()
    assert s.sweep_interval_seconds == 7
    assert s.database_url("scheduling") == "postgresql+psycopg://postgres@h/db"


def test_hai_token_prints_a_token_the_services_accept(monkeypatch):
    monkeypatch.delenv("HAI_JWT_SECRET", raising=False)
    result = CliRunner().invoke(app, ["token", "--sub", "nina", "--role", "nurse",
                                      "--role", "oncall"])
    assert result.exit_code == 0, result.output
    principal = TokenVerifier(Settings(jwt_secret=DEV_JWT_SECRET)).verify(result.output.strip())
    assert principal.sub == "nina" and principal.roles == {"nurse", "oncall"}


def test_hai_token_center_writes_the_centers_claim(monkeypatch):
    monkeypatch.delenv("HAI_JWT_SECRET", raising=False)
    verifier = TokenVerifier(Settings(jwt_secret=DEV_JWT_SECRET))

    def minted(*args: str):
        result = CliRunner().invoke(app, ["token", "--sub", "nina", "--role", "nurse", *args])
        assert result.exit_code == 0, result.output
        return verifier.verify(result.output.strip())

    assert minted("--center", "north", "--center", "south").centers == {"north", "south"}
    every = minted("--center", "*")
    assert every.centers is None and every.centers_claimed
    bare = minted()
    assert bare.centers is None and not bare.centers_claimed
    assert CliRunner().invoke(app, ["token", "--sub", "x", "--role", "nurse",
                                    "--center", " "]).exit_code != 0


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


def test_a_variable_two_sections_read_has_one_default():
    """`services/settings.py` composes the sections into one settings object: a field two
    sections declare (one environment variable two services read) must mean the same in both,
    or `hai up` would run one of them on the other's default."""
    from services.settings import SECTIONS

    declared: dict[str, dict[str, object]] = {}
    for section in SECTIONS:
        for name, info in section.model_fields.items():
            if name not in Settings.model_fields:
                declared.setdefault(name, {})[section.__name__] = info.get_default(
                    call_default_factory=True)
    differing = {name: by for name, by in declared.items() if len({repr(v) for v in by.values()}) > 1}
    assert differing == {}
    assert {name for name, by in declared.items() if len(by) > 1} >= {
        "dashboard_url", "sweep_interval_seconds", "stale_after_intervals", "flow_warning_pct"}


def test_every_section_reads_its_own_variables(monkeypatch):
    from services.alerts.settings import AlertsSettings
    from services.dashboard.settings import DashboardSettings
    from services.inventory.settings import InventorySettings

    monkeypatch.setenv("HAI_FLOW_CRITICAL_PCT", "31")
    monkeypatch.setenv("HAI_INVENTORY_SEED_DEMO_CATALOGUE", "false")
    monkeypatch.setenv("HAI_DASHBOARD_URL", "https://dash.example")
    assert AlertsSettings().flow_critical_pct == HaiSettings().flow_critical_pct == 31
    assert InventorySettings().inventory_seed_demo_catalogue is False
    assert DashboardSettings().dashboard_url == AlertsSettings().dashboard_url == "https://dash.example"
    from services.scheduling.settings import SchedulingSettings

    monkeypatch.setenv("HAI_FLOW_WARNING_PCT", "18")
    assert SchedulingSettings().flow_warning_pct == AlertsSettings().flow_warning_pct == 18
    platform = Settings()
    for name in ("flow_critical_pct", "flow_warning_pct", "refill_interval_days", "sweep_interval_seconds"):
        assert not hasattr(platform, name)  # the platform knows no service's settings
