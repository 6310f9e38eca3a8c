"""Scheduling's settings section: its database, the sweep, the refill and dose rules (DOMAIN.md,
Scheduling defaults and Safety rules) and the thresholds its answers are judged by."""

from __future__ import annotations

from functools import lru_cache

from services.addresses import ServiceAddresses


class SchedulingSettings(ServiceAddresses):
    """The platform settings and scheduling's own (`HAI_` environment variables)."""

    scheduling_database_url: str = "sqlite:///var/scheduling.db"

    # the sweep (and its heartbeat, which alerts' watchdog expects once per interval)
    sweep_interval_seconds: int = 60
    stale_after_intervals: int = 3  # readiness: no sweep for this many intervals is not ready

    # refills (DOMAIN.md, Scheduling defaults)
    refill_interval_days: int = 14
    refill_window_days: int = 4
    due_soon_hours: int = 48  # `refill.due_soon`, and `urgency: due_soon` in answers
    near_empty_hours: int = 72  # `reservoir.near_empty`, `near_empty` in answers, the due time
    min_refill_interval_hours: float = 24.0  # DOMAIN.md, Safety rules
    pharmacy_lead_time_days: int = 3
    delivery_late_hours: int = 12
    # the ±band of `flow_abnormal` in answers; alerts raises its flow alerts by the same variable
    flow_warning_pct: float = 15.0

    # flow surveillance (DOMAIN.md, Flow surveillance): the lot test and the pump trend
    lot_drift_min_pumps: int = 5
    lot_drift_min_rest_pumps: int = 5
    lot_drift_min_readings_per_pump: int = 1
    lot_drift_alpha: float = 0.001
    lot_drift_min_difference_pct: float = 4.0
    lot_drift_rebuild_hours: float = 24.0
    flow_trend_window: int = 6
    flow_trend_min_readings: int = 3
    flow_trend_alpha: float = 0.10
    # the system defaults of a centre's own settings (CONTRACT.md, Centre settings) that
    # scheduling shows but alerts applies (the same variables, the same defaults)
    time_zone: str = "UTC"  # IANA; the centre's day for `due_today` and the dashboard
    flow_critical_pct: float = 25.0
    escalation_delay_seconds: int = 900
    ack_timeout_seconds: int = 4 * 3600
    # a change of a centre's settings applies at once on the replica that took it, within this
    # on every other replica of scheduling (each reloads the small table after it)
    center_settings_cache_seconds: float = 5.0
    # the registry's refill report is answered from its last computation while younger than
    # this; the worker computes the default period (the last twelve months) again each half
    report_max_age_seconds: float = 600.0

    # dosing (DOMAIN.md)
    fudr_default_mg_per_kg_day: float = 0.12
    fudr_label_min_mg_per_kg_day: float = 0.1
    fudr_label_max_mg_per_kg_day: float = 0.6
    adjusted_weight_threshold_pct: float = 25.0
    # hard limits per fill (DOMAIN.md, Safety rules): no override passes them
    fudr_hard_min_mg_per_kg_day: float = 0.05
    fudr_hard_max_mg_per_kg_day: float = 1.0
    dexamethasone_hard_max_mg: float = 50.0
    heparin_hard_max_units: float = 100_000.0


@lru_cache
def get_settings() -> SchedulingSettings:
    """Scheduling's settings, read once from the environment."""
    return SchedulingSettings()
