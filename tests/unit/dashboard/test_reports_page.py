"""The registry page over faked APIs: one centre's bars beside the consortium's, with a table
for each chart, and the CSV downloads (formula-safe)."""

from __future__ import annotations

import csv
import io
import re

from services.dashboard.demo import DEMO_CENTER
from services.dashboard.reports import compare_chart, shown
from shared.auth import TokenVerifier
from shared.clock import MovableClock
from tests.unit.dashboard.fakes import T0, FakeApis, client, settings, sign_in

ROWS = [
    {"center": "A", "month": "2026-10", "on_time_share": 0.5, "abnormal_share": 0.25,
     "overdue_hours_median": 12.0, "overdue_hours_p90": 30.0, "refills_done": 2, "readings": 2,
     "abnormal_readings": 1, "deliveries": 0, "deliveries_late": 0},
    {"center": "*", "month": "2026-10", "on_time_share": 1.0, "abnormal_share": None,
     "overdue_hours_median": None, "overdue_hours_p90": None, "refills_done": 4, "readings": 0,
     "abnormal_readings": 0, "deliveries": 1, "deliveries_late": 1},
]


def test_the_bars_of_a_centre_stand_beside_the_consortium_s_by_value() -> None:
    chart = compare_chart(ROWS, "A", "on_time_share", "On time", "%", width=400, height=200)
    [mine], [all_] = chart.centre, chart.consortium
    assert all_.height == 2 * mine.height  # 100 % against 50 %
    assert all_.x == mine.x + chart.bar_width
    assert chart.rows == [("2026-10", "50.0 %", "100.0 %")]
    none = compare_chart(ROWS, "A", "overdue_hours_median", "Overdue", "h")
    assert none.rows == [("2026-10", "12.0 h", "–")] and none.consortium[0].height == 0
    assert compare_chart([], "A", "on_time_share", "x", "%").centre == []
    assert shown(None, "%") == "–" and shown(0.12345, "%") == "12.3 %"


def test_the_page_draws_a_chart_and_its_table_for_one_centre() -> None:
    fake = FakeApis()
    fake.on("scheduling", "GET", "/v1/reports/refills", {"rows": ROWS})
    fake.on("inventory", "GET", "/v1/reports/pumps", {"rows": [
        {"center": "A", "status": "implanted", "pumps": 3},
        {"center": "*", "status": "implanted", "pumps": 9}]})
    fake.on("inventory", "GET", "/v1/reports/explants", {"rows": []})
    c = client(fake)
    sign_in(c)
    r = c.get("/reports", params={"center": "A", "period_from": "2026-10", "period_to": "bad"})
    assert r.status_code == 200, r.text
    assert len(re.findall(r'data-testid="report-chart"', r.text)) == 4
    assert len(re.findall(r'data-testid="report-table"', r.text)) == 4
    assert 'role="img"' in r.text and "<title" in r.text
    [params] = fake.called("scheduling", "GET", "/v1/reports/refills")
    assert params == {"center": "A", "from": "2026-10"}  # a malformed month is left out


def test_the_csv_download_is_formula_safe() -> None:
    fake = FakeApis()
    fake.on("inventory", "GET", "/v1/reports/explants", {"rows": [
        {"center": "A", "month": "2026-10", "reason": "=HYPERLINK(\"http://evil\")",
         "explants": 1}]})
    c = client(fake)
    sign_in(c)
    r = c.get("/reports/explants.csv", params={"center": "A"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows[0]["reason"] == "'=HYPERLINK(\"http://evil\")"
    assert c.get("/reports/nothing.csv").status_code == 404


def test_the_registry_page_asks_every_api_with_the_users_own_centres() -> None:
    fake = FakeApis()
    fake.on("scheduling", "GET", "/v1/reports/refills", {"rows": ROWS})
    fake.on("inventory", "GET", "/v1/reports/pumps", {"rows": []})
    fake.on("inventory", "GET", "/v1/reports/explants", {"rows": []})
    c = client(fake)
    sign_in(c)  # a nurse of one centre: the services scope each report to it (CONTRACT.md)
    assert c.get("/reports").status_code == 200
    verifier = TokenVerifier(settings(), MovableClock(T0))
    asked = {path: verifier.verify(h["authorization"].removeprefix("Bearer ")).centers
             for _s, _m, path, _p, _b, h in fake.calls if path.startswith("/v1/reports/")}
    assert asked == dict.fromkeys(("/v1/reports/refills", "/v1/reports/pumps",
                                   "/v1/reports/explants"), {DEMO_CENTER})
