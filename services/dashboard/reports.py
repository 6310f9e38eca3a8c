"""The registry page: one centre's months beside the consortium's (scheduling's refill report,
inventory's pumps and explants), as bar charts drawn here in SVG with a table beside each, and
the CSV of each report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from services.dashboard.routes import CtxDep
from shared.reports import CONSORTIUM, MONTH, to_csv

router = APIRouter()

# the figures charted, each a share (0–1) or hours: (field, title, unit)
CHARTED = (("on_time_share", "Refills on time (inside the window)", "%"),
           ("abnormal_share", "Abnormal flow readings", "%"),
           ("overdue_hours_median", "Hours overdue, median of the late refills", "h"),
           ("overdue_hours_p90", "Hours overdue, 90th percentile", "h"))
REPORTS = {"refills": ("scheduling", "/v1/reports/refills"),
           "pumps": ("inventory", "/v1/reports/pumps"),
           "explants": ("inventory", "/v1/reports/explants")}


@dataclass
class Bar:
    x: float
    y: float
    height: float
    value: float | None
    label: str


@dataclass
class CompareChart:
    """Bars per month: the centre's and the consortium's side by side."""

    title: str
    unit: str
    width: int
    height: int
    plot_left: int
    plot_bottom: int
    bar_width: float
    centre: list[Bar] = field(default_factory=list)
    consortium: list[Bar] = field(default_factory=list)
    months: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # the table: month, centre, all


def shown(value: float | None, unit: str) -> str:
    """A figure as the page writes it: a share in %, hours with one decimal, a dash for none."""
    if value is None:
        return "–"
    return f"{value * 100:.1f} %" if unit == "%" else f"{value:.1f} h"


def compare_chart(rows: list[dict[str, Any]], center: str, figure: str, title: str, unit: str, *,
                  width: int = 640, height: int = 220) -> CompareChart:
    """Lay out one figure per month, the centre's bar beside the consortium's (pure)."""
    months = sorted({r["month"] for r in rows})
    by = {(r["center"], r["month"]): r.get(figure) for r in rows}
    left, bottom, top = 48, height - 28, 10
    chart = CompareChart(title=title, unit=unit, width=width, height=height, plot_left=left,
                         plot_bottom=bottom, bar_width=0)
    if not months:
        return chart
    scale = 100.0 if unit == "%" else 1.0
    values = [v * scale for v in by.values() if v is not None]
    top_value = max([*values, 1.0]) * 1.1
    slot = (width - left - 8) / len(months)
    chart.bar_width = slot * 0.38

    def y_of(value: float) -> float:
        return bottom - value / top_value * (bottom - top)

    for i in range(5):
        value = top_value * i / 4
        chart.y_ticks.append((y_of(value), f"{value:.0f}"))
    for i, month in enumerate(months):
        x = left + i * slot + slot * 0.1
        chart.months.append((x + chart.bar_width, month[2:]))
        for bars, who, dx in ((chart.centre, center, 0.0),
                              (chart.consortium, CONSORTIUM, chart.bar_width)):
            raw = by.get((who, month))
            v = 0.0 if raw is None else raw * scale
            bars.append(Bar(x=x + dx, y=y_of(v), height=bottom - y_of(v), value=raw,
                            label=f"{month} {'consortium' if who == CONSORTIUM else who}: "
                                  f"{shown(raw, unit)}"))
        chart.rows.append((month, shown(by.get((center, month)), unit),
                           shown(by.get((CONSORTIUM, month)), unit)))
    return chart


def _period(value: str | None) -> str | None:
    return value if value and MONTH.match(value) else None


@router.get("/reports", include_in_schema=False)
def reports_page(ctx: CtxDep, center: str = "", period_from: str = "",
                 period_to: str = "") -> HTMLResponse:
    """One centre beside the consortium (every centre when none is chosen)."""
    params = {"from": _period(period_from), "to": _period(period_to), "center": center or None}
    refills = ctx.attempt(lambda: ctx.api.get("scheduling", "/v1/reports/refills", **params),
                          {"rows": []})
    pumps = ctx.attempt(lambda: ctx.api.get("inventory", "/v1/reports/pumps",
                                            center=center or None), {"rows": []})
    explants = ctx.attempt(lambda: ctx.api.get("inventory", "/v1/reports/explants", **params),
                           {"rows": []})
    centres = sorted({r["center"] for r in pumps["rows"] if r["center"] != CONSORTIUM})
    charts = [compare_chart(refills["rows"], center or CONSORTIUM, f, title, unit)
              for f, title, unit in CHARTED] if center else []
    return ctx.render("reports.html", center=center, centres=centres, charts=charts,
                      refills=refills, pumps=pumps["rows"], explants=explants["rows"],
                      period_from=params["from"] or "", period_to=params["to"] or "",
                      consortium=CONSORTIUM)


@router.get("/reports/{name}.csv", include_in_schema=False)
def report_csv(ctx: CtxDep, name: str, center: str = "", period_from: str = "",
               period_to: str = "") -> Response:
    """One report's rows as CSV (the service's own JSON, written out here)."""
    if name not in REPORTS:
        return Response("no such report", status_code=404, media_type="text/plain")
    service, path = REPORTS[name]
    params = {"center": center or None}
    if name != "pumps":
        params |= {"from": _period(period_from), "to": _period(period_to)}
    report = ctx.attempt(lambda: ctx.api.get(service, path, **params))
    if report is None:
        return Response("; ".join(ctx.errors), status_code=502, media_type="text/plain")
    rows = report["rows"]
    columns = list(rows[0]) if rows else ["center"]
    return Response(to_csv(rows, columns), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
