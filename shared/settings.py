"""The platform's configuration from `HAI_` environment variables (see CONTRACT.md, Running).

`Settings` holds what every service shares: environment, broker, tracing, auth, HTTP limits,
database contention, messaging. Each service adds its own section in its own folder
(`services/<name>/settings.py`, a subclass of `Settings`: its database URL, its clinical
thresholds); `services/settings.py` composes them for the `hai` command. Nothing here names a
service."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "hai-dev-secret-not-for-production-use-0000"  # noqa: S105 - refused in production


class Settings(BaseSettings):
    """The settings every service shares; a service's own ones are in its section (a subclass)."""

    model_config = SettingsConfigDict(env_prefix="HAI_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    amqp_url: str | None = None
    # OpenTelemetry: spans exported over OTLP/HTTP to this collector; unset, tracing is off
    otlp_endpoint: str | None = None
    amqp_heartbeat_seconds: int = 30
    jwt_secret: str = DEV_JWT_SECRET
    jwt_jwks_url: str | None = None
    jwt_audience: str | None = None
    # a token without the `centers` claim: 403 when on, every centre when off (CONTRACT.md,
    # HTTP conventions); unset: on in production, off elsewhere. Production refuses `false`.
    centers_claim_required: bool | None = None
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
    # woken by a commit, a relay of no urgent event waits this long before it claims, so that the
    # commits of that moment go out in one batch (OutboxRelay's `linger_seconds`); 0: at once
    outbox_linger_seconds: float = Field(default=0.05, ge=0.0, le=1.0)
    # on PostgreSQL and RabbitMQ, the contract's urgent events (an abnormal flow's reading) go by
    # a relay of their own, on a broker connection of its own: never behind a bulk batch in the
    # relay nor in the broker's channel (shared.runtime.Worker)
    outbox_urgent_lane: bool = True
    consumer_prefetch: int = 200  # a consumer's batch; twice this is kept in flight
    consumer_max_attempts: int = 5
    consumer_retry_delay_ms: int = 2000

    @model_validator(mode="after")
    def _refuse_dev_defaults_in_production(self) -> Settings:
        if self.env == "production":
            if self.jwt_secret == DEV_JWT_SECRET and not self.jwt_jwks_url:
                raise ValueError("HAI_JWT_SECRET is the dev secret; set a real one in production")
            if not self.amqp_url:
                raise ValueError("HAI_AMQP_URL is required in production (no in-process bus)")
            if self.centers_claim_required is False:
                raise ValueError("HAI_CENTERS_CLAIM_REQUIRED cannot be off in production: a token "
                                 "without the centers claim would see every centre")
        return self

    @property
    def centers_claim_enforced(self) -> bool:
        """Whether a token must carry the `centers` claim (else it sees every centre)."""
        if self.centers_claim_required is None:
            return self.env == "production"
        return self.centers_claim_required

    def database_url(self, service: str) -> str:
        """The database URL of one service: its section's `<service>_database_url`."""
        url = getattr(self, f"{service}_database_url", None)
        if url is None:
            raise LookupError(f"these settings ({type(self).__name__}) have no database for "
                              f"{service!r}: use that service's settings section")
        return str(url)


@lru_cache
def get_settings() -> Settings:
    """The platform settings of this process, read once from the environment."""
    return Settings()
