"""Presentation logic of the dashboard, plain functions testable without HTTP."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.dashboard.localtime import fmt_local, localize_text, to_local
from services.dashboard.plain import label
from shared.contracts.vocabulary import OPEN_ALERT_STATUSES, AlertStatus, Severity

GS = "\x1d"
UTC_ZONE = ZoneInfo("UTC")
_GS_SPELLINGS = ("<GS>", "<gs>", "\\x1d", "\\x1D", "\\u001d", "\\u001D", "{GS}", "␝")


def parse_ts(value: Any) -> datetime | None:
    """An ISO-8601 timestamp from an API as an aware UTC datetime (None when absent or bad)."""
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def iso_z(when: datetime) -> str:
    """UTC ISO-8601 with a Z, as the APIs want it."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def fmt_relative(when: datetime | None, now: datetime) -> str:
    """`in 5 h`, `3 d ago`: how far a time lies from now."""
    if when is None:
        return "—"
    seconds = (when - now).total_seconds()
    hours = abs(seconds) / 3600
    amount = f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.1f} d"
    return f"in {amount}" if seconds >= 0 else f"{amount} ago"


def normalize_udi(text: str) -> str:
    """A scanned UDI with the scanner's group separator however it arrived, as a real GS."""
    value = (text or "").strip().replace("\r", "").replace("\n", "")
    for spelling in _GS_SPELLINGS:
        value = value.replace(spelling, GS)
    return value


def parse_lots(text: str) -> list[str]:
    """Lot numbers typed as a comma, semicolon, space or newline separated list."""
    return [lot for lot in re.split(r"[\s,;]+", text or "") if lot]


# --- worklist -------------------------------------------------------------------------------

URGENCY_ORDER = {"overdue": 0, "due_today": 1, "due_soon": 2, "later": 3}
URGENCY_LABELS = {"overdue": "Overdue", "due_today": "Due today", "due_soon": "Due soon",
                  "later": "Later"}
# the worklist's order: the first that applies to a row places it (DOMAIN.md's dangers first)
WORKLIST_RANKS = ("overdue", "near_empty", "critical_alert", "due_today", "due_soon", "later")


@dataclass
class WorklistRow:
    """One scheduled appointment as the worklist shows it."""

    appointment: dict[str, Any]
    due_at: datetime | None
    projected_empty_at: datetime | None
    urgency: str
    near_empty: bool
    empty_already: bool
    delivery: dict[str, Any] | None = None
    delivery_error: str | None = None
    patient: dict[str, Any] | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return URGENCY_LABELS[self.urgency]

    @property
    def critical_alert(self) -> bool:
        return any(a.get("severity") == Severity.CRITICAL for a in self.alerts)

    @property
    def rank(self) -> str:
        """Where the row sorts: overdue, near empty, critical alert, due today, due soon, later."""
        if self.urgency == "overdue":
            return "overdue"
        if self.near_empty:
            return "near_empty"
        if self.critical_alert:
            return "critical_alert"
        return self.urgency


def alerts_by_pump(alerts: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Open alerts grouped by pump serial, most urgent first within each pump."""
    out: dict[str, list[dict[str, Any]]] = {}
    for alert in sort_alerts([a for a in alerts if a.get("status") in OPEN_ALERT_STATUSES]):
        serial = alert.get("pump_serial")
        if serial:
            out.setdefault(str(serial), []).append(alert)
    return out


def build_worklist(appointments: list[dict[str, Any]], now: datetime,
                   open_alerts: list[dict[str, Any]] | None = None) -> list[WorklistRow]:
    """Scheduled appointments with their pump's open alerts, most urgent first: overdue, near
    empty, critical alert, due today, due soon, later; then by due time. The urgency and
    near-empty judgements are scheduling's (the appointment's `urgency` and `near_empty`), the
    severity alerts'; an answer without them counts as `later`, not near empty."""
    by_pump = alerts_by_pump(open_alerts or [])
    rows = []
    for appt in appointments:
        due_at = parse_ts(appt.get("due_at"))
        empty_at = parse_ts(appt.get("projected_empty_at"))
        urgency = appt.get("urgency")
        rows.append(WorklistRow(
            appointment=appt, due_at=due_at, projected_empty_at=empty_at,
            urgency=urgency if urgency in URGENCY_ORDER else "later",
            near_empty=appt.get("near_empty") is True,
            empty_already=empty_at is not None and empty_at <= now,
            alerts=by_pump.get(str(appt.get("pump_serial", "")), []),
        ))
    far = datetime.max.replace(tzinfo=UTC)
    rows.sort(key=lambda r: (WORKLIST_RANKS.index(r.rank), r.due_at or far,
                             str(r.appointment.get("pump_serial", ""))))
    return rows


# --- flow chart -----------------------------------------------------------------------------

@dataclass
class ChartPoint:
    """One measured flow on the chart."""

    x: float
    y: float
    flow_ml_per_day: float
    deviation_pct: float | None
    at: str
    abnormal: bool


@dataclass
class FlowChart:
    """An SVG chart of measured flows against the labeled rate and its ±band."""

    width: int
    height: int
    points: list[ChartPoint] = field(default_factory=list)
    labeled_y: float | None = None
    band_top_y: float | None = None
    band_bottom_y: float | None = None
    labeled_flow_ml_per_day: float | None = None
    band_pct: float | None = None  # scheduling's ±warning band (the readings' flow_warning_pct)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    plot_left: int = 56
    plot_right: int = 0
    plot_top: int = 12
    plot_bottom: int = 0
    # scheduling's trend: a dashed segment from the last reading to the predicted next one
    projection: tuple[float, float, float, float] | None = None
    projection_label: str = ""

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


def flow_chart(readings: list[dict[str, Any]], labeled_flow_ml_per_day: float | None, *,
               width: int = 640, height: int = 260, zone: ZoneInfo = UTC_ZONE,
               trend: dict[str, Any] | None = None) -> FlowChart:
    """Lay out the measured flows (oldest first) and the labeled rate ± the band as SVG geometry;
    the band and each point's abnormality are scheduling's (`flow_warning_pct`, `flow_abnormal`
    of the readings): no reading, no band. `trend` (the flow-readings answer's) adds the
    projection to the next reading."""
    left, right_pad, top, bottom_pad = 56, 16, 12, 36
    band_pct = next((float(r["flow_warning_pct"]) for r in reversed(readings)
                     if r.get("flow_warning_pct") is not None), None)
    chart = FlowChart(width=width, height=height, band_pct=band_pct, plot_left=left,
                      plot_right=width - right_pad, plot_top=top, plot_bottom=height - bottom_pad)
    measured = [(parse_ts(r.get("performed_at")), r) for r in readings
                if r.get("measured_flow_ml_per_day") is not None]
    measured = [(t, r) for t, r in measured if t is not None]
    labeled = labeled_flow_ml_per_day
    if labeled is None:
        expected = [float(r["expected_flow_ml_per_day"]) for _, r in measured
                    if r.get("expected_flow_ml_per_day")]
        labeled = expected[-1] if expected else None
    chart.labeled_flow_ml_per_day = labeled
    values = [float(r["measured_flow_ml_per_day"]) for _, r in measured]
    predicted_at = parse_ts((trend or {}).get("predicted_at")) if measured else None
    if predicted_at is not None:
        values.append(float(trend["predicted_flow_ml_per_day"]))  # type: ignore[index]
    if labeled:
        values.append(labeled)
    if labeled and band_pct is not None:
        values += [labeled * (1 + band_pct / 100), labeled * (1 - band_pct / 100)]
    if not values:
        return chart
    y_min, y_max = min(values), max(values)
    pad = (y_max - y_min) * 0.15 or max(abs(y_max) * 0.2, 0.1)
    y_min, y_max = max(0.0, y_min - pad), y_max + pad

    def y_of(value: float) -> float:
        return chart.plot_bottom - (value - y_min) / (y_max - y_min) * (chart.plot_bottom - top)

    for i in range(5):
        value = y_min + (y_max - y_min) * i / 4
        chart.y_ticks.append((y_of(value), f"{value:.2f}"))
    if labeled:
        chart.labeled_y = y_of(labeled)
    if labeled and band_pct is not None:
        chart.band_top_y = y_of(labeled * (1 + band_pct / 100))
        chart.band_bottom_y = y_of(labeled * (1 - band_pct / 100))
    if not measured:
        return chart
    t0 = measured[0][0].timestamp()  # type: ignore[union-attr]
    t1 = (predicted_at or measured[-1][0]).timestamp()  # type: ignore[union-attr]
    span = (t1 - t0) or 1.0

    def x_of(when: datetime) -> float:
        if t1 == t0:
            return (left + chart.plot_right) / 2
        return left + (when.timestamp() - t0) / span * (chart.plot_right - left)

    for when, r in measured:
        assert when is not None
        flow = float(r["measured_flow_ml_per_day"])
        deviation = r.get("flow_deviation_pct")
        if deviation is None and labeled:
            deviation = (flow - labeled) / labeled * 100
        chart.points.append(ChartPoint(
            x=x_of(when), y=y_of(flow), flow_ml_per_day=flow,
            deviation_pct=None if deviation is None else float(deviation),
            at=fmt_local(when, zone), abnormal=r.get("flow_abnormal") is True,
        ))
    if predicted_at is not None and trend is not None:
        last = chart.points[-1]
        flow = float(trend["predicted_flow_ml_per_day"])
        chart.projection = (last.x, last.y, x_of(predicted_at), y_of(flow))
        deviation_pct = float(trend["predicted_deviation_pct"])
        chart.projection_label = (f"trend: {flow:.3f} mL/day ({deviation_pct:+.1f} %) "
                                  f"predicted for {fmt_local(predicted_at, zone)}")
    firsts = [measured[0][0], measured[-1][0]] if t1 != t0 else [measured[0][0]]
    chart.x_ticks = [(x_of(w), to_local(w, zone).strftime("%Y-%m-%d")) for w in firsts
                     if w is not None]
    return chart


SEVERITY_ORDER = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
STATUS_ORDER = {AlertStatus.FIRING: 0, AlertStatus.ACKNOWLEDGED: 1, AlertStatus.RESOLVED: 2}


def page_acknowledgers(timeline: Any) -> dict[str, str]:
    """Who acknowledged each page of an alert (by notification id), from its timeline."""
    return {str(t["details"]["notification_id"]): str(t.get("actor") or "")
            for t in timeline or [] if isinstance(t, dict) and t.get("action") == "page_acknowledged"
            and isinstance(t.get("details"), dict) and t["details"].get("notification_id")}


def sort_alerts(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Open ones first (firing before acknowledged), then by severity, newest first."""
    def key(a: dict[str, Any]) -> tuple[int, int, float]:
        last = parse_ts(a.get("last_raised_at")) or parse_ts(a.get("first_raised_at"))
        return (STATUS_ORDER.get(a.get("status", ""), 3), SEVERITY_ORDER.get(a.get("severity", ""), 3),
                -(last.timestamp() if last else 0.0))

    return sorted(alerts, key=key)


def detail_facts(details: Any, zone: ZoneInfo) -> list[tuple[str, str]]:
    """An alert's `details` as labelled fields: timestamps in local time, lists joined."""
    if not isinstance(details, dict):
        return [("Details", localize_text(str(details), zone))] if details else []

    def text(value: Any) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, float):
            return f"{value:.4g}"
        if isinstance(value, list):
            return ", ".join(text(v) for v in value) or "—"
        if isinstance(value, dict):
            return "; ".join(f"{label(k)} {text(v)}" for k, v in value.items())
        if value is None or value == "":
            return "—"
        return localize_text(str(value), zone)

    return [(label(k), text(v)) for k, v in details.items()]
