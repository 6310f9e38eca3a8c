"""The HL7 v2 pharmacy bridge's settings section (`hai hl7-bridge`; CONTRACT.md, HL7 v2 bridge):
off unless enabled."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from shared.settings import Settings


class Hl7BridgeSettings(Settings):
    """The platform settings and the bridge's own (`HAI_` environment variables)."""

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


@lru_cache
def get_settings() -> Hl7BridgeSettings:
    """The bridge's settings, read once from the environment."""
    return Hl7BridgeSettings()
