"""Configuration from `HAI_` environment variables (see CONTRACT.md, Running)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "hai-dev-secret-not-for-production-use-0000"  # noqa: S105 - refused in production

SERVICES = ("inventory", "scheduling", "alerts")
DEFAULT_PORTS = {"dashboard": 8000, "inventory": 8001, "scheduling": 8002, "alerts": 8003}


class Settings(BaseSettings):
    """Every setting of the system; clinical defaults come from DOMAIN.md."""

    model_config = SettingsConfigDict(env_prefix="HAI_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    amqp_url: str | None = None
    # OpenTelemetry: spans exported over OTLP/HTTP to this collector; unset, tracing is off
    otlp_endpoint: str | None = None
    amqp_heartbeat_seconds: int = 30
    inventory_database_url: str = "sqlite:///var/inventory.db"
    scheduling_database_url: str = "sqlite:///var/scheduling.db"
    alerts_database_url: str = "sqlite:///var/alerts.db"
    inventory_url: str = "http://127.0.0.1:8001"
    scheduling_url: str = "http://127.0.0.1:8002"
    alerts_url: str = "http://127.0.0.1:8003"
    dashboard_url: str = "http://127.0.0.1:8000"
    jwt_secret: str = DEV_JWT_SECRET
    jwt_jwks_url: str | None = None
    jwt_audience: str | None = None
    # signs pagination cursors (HMAC-SHA256); unset: a key derived from HAI_JWT_SECRET. Every
    # replica of a service must share it, or a page's cursor fails on the next replica.
    cursor_secret: str | None = None
    cors_origins: list[str] = Field(default_factory=list)
    log_level: str = "INFO"
    log_json: bool = True
    worker_heartbeat_file: str | None = None  # touched while a worker's threads live (pod liveness)
    # a request body over this is refused with 413 before anything parses it (CONTRACT, HTTP)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1)

    # database contention (CONTRACT.md: a locked row is 409 within a second, an exhausted pool 503)
    db_pool_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    db_lock_timeout_ms: int = Field(default=500, ge=1, le=60_000)  # API requests only, PostgreSQL

    # FHIR R4 read API (CONTRACT.md): the base of our own code systems, identifier systems and
    # extensions, and each centre's MRN identifier system (centre → URI; unset: ours per centre)
    fhir_system_base: str = "https://hai.example.org/fhir"
    fhir_mrn_systems: dict[str, str] = Field(default_factory=dict)
    # messaging
    outbox_poll_seconds: float = 0.5
    outbox_batch_size: int = 500
    consumer_prefetch: int = 200  # a consumer's batch; twice this is kept in flight
    consumer_max_attempts: int = 5
    consumer_retry_delay_ms: int = 2000

    # inventory: seed the demo pump-model catalogue (DOMAIN.md) at start-up; off in production
    inventory_seed_demo_catalogue: bool = True

    # scheduling (DOMAIN.md, Scheduling defaults)
    sweep_interval_seconds: int = 60
    refill_interval_days: int = 14
    refill_window_days: int = 4
    due_soon_hours: int = 48
    near_empty_hours: int = 72
    min_refill_interval_hours: float = 24.0  # DOMAIN.md, Safety rules
    pharmacy_lead_time_days: int = 3
    delivery_late_hours: int = 12
    fudr_default_mg_per_kg_day: float = 0.12
    fudr_label_min_mg_per_kg_day: float = 0.1
    fudr_label_max_mg_per_kg_day: float = 0.6
    adjusted_weight_threshold_pct: float = 25.0
    # hard limits per fill (DOMAIN.md, Safety rules): no override passes them
    fudr_hard_min_mg_per_kg_day: float = 0.05
    fudr_hard_max_mg_per_kg_day: float = 1.0
    dexamethasone_hard_max_mg: float = 50.0
    heparin_hard_max_units: float = 100_000.0

    # alerts (DOMAIN.md; CONTRACT.md, Alerts)
    flow_warning_pct: float = 15.0
    flow_critical_pct: float = 25.0
    overdue_critical_hours_to_empty: float = 72.0
    escalation_delay_seconds: int = 900
    page_max_attempts: int = 5
    page_first_retry_seconds: float = 2.0
    page_timeout_seconds: float = 5.0
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_from: str = "hai-alerts@localhost"
    stale_after_intervals: int = 3
    page_sweep_seconds: float = 1.0  # how often the alerts pager looks for due pages and escalations
    # production refuses webhook addresses on loopback and private ranges unless this is set
    webhook_allow_private: bool = False

    # the HL7 v2 pharmacy bridge (`hai hl7-bridge`; CONTRACT.md, HL7 v2 bridge): off unless enabled
    hl7_enabled: bool = False
    hl7_bridge_database_url: str = "sqlite:///var/hl7_bridge.db"
    hl7_pharmacy_host: str = "127.0.0.1"
    hl7_pharmacy_port: int = Field(default=2575, ge=1, le=65535)
    hl7_listen_host: str = "127.0.0.1"
    hl7_listen_port: int = Field(default=2576, ge=0, le=65535)  # 0: any free port (tests)
    hl7_ack_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    hl7_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    hl7_max_attempts: int = Field(default=5, ge=1, le=100)  # sends of one order, then dead-lettered
    hl7_retry_delay_ms: int = Field(default=2000, ge=1)  # between sends (at most the queue's delay)
    # orders taken from the queue at once and sent one after the other: their sends together must
    # end within the AMQP heartbeat (the consumer's connection is not served meanwhile)
    hl7_prefetch: int = Field(default=1, ge=1, le=100)
    hl7_sending_application: str = "HAI"
    hl7_sending_facility: str = "HAI-CENTRE"
    hl7_receiving_application: str = "PHARMACY"
    hl7_receiving_facility: str = "PHARMACY"

    @model_validator(mode="after")
    def _refuse_dev_defaults_in_production(self) -> Settings:
        if self.env == "production":
            if self.jwt_secret == DEV_JWT_SECRET and not self.jwt_jwks_url:
                raise ValueError("HAI_JWT_SECRET is the dev secret; set a real one in production")
            if not self.amqp_url:
                raise ValueError("HAI_AMQP_URL is required in production (no in-process bus)")
        return self

    def database_url(self, service: str) -> str:
        """The database URL of one service."""
        return str(getattr(self, f"{service}_database_url"))

    def service_url(self, service: str) -> str:
        """Where one service's HTTP API is found."""
        return str(getattr(self, f"{service}_url"))


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
