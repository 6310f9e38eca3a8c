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
    # a centre's own thresholds (scheduling's `center.settings_changed`) apply at once on the
    # replica that consumed the change, within this on the others
    center_settings_cache_seconds: float = 5.0
    page_max_attempts: int = 5
    page_first_retry_seconds: float = 2.0
    page_timeout_seconds: float = 5.0
    page_sweep_seconds: float = 1.0  # how often the pager looks for due pages and escalations
    # where a worker of abnormal flows runs the urgent lane (deploy/Procfile's alerts_flow): the
    # other pager passes (the sweep job, the kick after an `alerts.events` commit, run by workers
    # of bulk work at a lower CPU priority) leave an abnormal flow's first page to that lane this
    # long, so that they never claim it and hold it behind a burst's hundreds; past it any pass
    # sends it (the lane's worker down or late). 0: no urgent lane, any pass takes it at once
    pager_urgent_grace_seconds: float = Field(default=0.0, ge=0.0, le=60.0)
    # consumers of `alerts.events` per worker on RabbitMQ (one on the in-process bus): a sweep's
    # burst is handled by several transactions at once, each waiting on the database in turn
    alerts_event_consumers: int = Field(default=3, ge=1, le=16)
    # the most events one transaction of an alerts consumer handles: a sweep's burst in batches
    # of this many, so that a batch holds the rows it raised (that a completed refill's clear
    # waits for) and its pages (invisible to the pager until it commits) briefly; the service-wide
    # HAI_CONSUMER_PREFETCH (200) suits bulk copies, not alerts that page
    alerts_consumer_batch: int = Field(default=20, ge=1, le=1000)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_from: str = "hai-alerts@localhost"
    # an acknowledged alert not resolved within this fires again and pages level 1 again (an
    # on-call table's `ack_timeout_seconds` overrides it for its centre); a snooze is bounded by
    # the second
    ack_timeout_seconds: int = 4 * 3600
    snooze_max_seconds: int = 24 * 3600
    # storms: at most this many page messages per recipient (name and address) per minute; when
    # more pages are due for one than that leaves room for, they go as one page listing the alerts
    # (up to page_group_max in one page, critical ones first), and with no room left they wait for
    # the minute to free one; a critical page never waits: its recipient's due pages go past it
    page_rate_per_minute: int = 20
    page_group_max: int = 50
    # heartbeat out: the pager pings this URL (a dead man's switch: healthchecks.io, Uptime Kuma,
    # Cronitor...) every interval, so that a dead alerting pipeline is noticed from outside
    heartbeat_url: str | None = None
    heartbeat_interval_seconds: float = 60.0
    # production refuses webhook addresses on loopback and private ranges unless this is set
    webhook_allow_private: bool = False


@lru_cache
def get_settings() -> AlertsSettings:
    """Alerts' settings, read once from the environment."""
    return AlertsSettings()
