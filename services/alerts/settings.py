"""Alerts' settings section: its database, the alert thresholds, escalation and paging."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from services.addresses import ServiceAddresses


class AlertsSettings(ServiceAddresses):
    """The platform settings and alerts' own (`HAI_` environment variables; DOMAIN.md and
    CONTRACT.md, Alerts)."""

    alerts_database_url: str = "sqlite:///var/alerts.db"
    # pages link to the alert on the dashboard
    dashboard_url: str = "http://127.0.0.1:8000"

    # the watchdog: scheduling's sweep interval (HAI_SWEEP_INTERVAL_SECONDS, the same variable
    # scheduling runs its sweep by), and how many of them may pass unheard
    sweep_interval_seconds: int = 60
    stale_after_intervals: int = 3

    # alert rules (DOMAIN.md)
    flow_warning_pct: float = 15.0
    flow_critical_pct: float = 25.0
    overdue_critical_hours_to_empty: float = 72.0

    # escalation and paging
    escalation_delay_seconds: int = 900
    page_max_attempts: int = 5
    page_first_retry_seconds: float = 2.0
    page_timeout_seconds: float = 5.0
    page_sweep_seconds: float = 1.0  # how often the pager looks for due pages and escalations
    # consumers of `alerts.events` per worker on RabbitMQ (one on the in-process bus): a sweep's
    # burst is handled by several transactions at once, each waiting on the database in turn
    alerts_event_consumers: int = Field(default=3, ge=1, le=16)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_from: str = "hai-alerts@localhost"
    # production refuses webhook addresses on loopback and private ranges unless this is set
    webhook_allow_private: bool = False


@lru_cache
def get_settings() -> AlertsSettings:
    """Alerts' settings, read once from the environment."""
    return AlertsSettings()
