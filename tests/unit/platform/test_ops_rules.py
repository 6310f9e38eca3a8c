"""The Prometheus alerting rules and the Grafana dashboard in deploy/ name only metrics the
services export, and every system metric has a rule watching it.

Rules are checked by `promtool check rules` when promtool is installed (Debian's `prometheus`
package), and parsed here in every case.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from services.registry import SERVICES
from tests.helpers import start_service, test_settings

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "hai.json"
METRIC = re.compile(r"\bhai_[a-z_]+\b")
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
                                                               "_created")}
# what an operator must be warned of: each needs a rule
WATCHED = {"hai_outbox_lag_seconds", "hai_queue_messages", "hai_queue_dead_letters",
           "hai_events_handled_total", "hai_job_last_success_age_seconds",
           "hai_page_failures_total", "hai_http_request_seconds_bucket",
           "hai_http_requests_total"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> set[str]:
    """Every series name the three services' /metrics can carry."""
    names: set[str] = set()
    tmp = tmp_path_factory.mktemp("metrics")
    for service in SERVICES:
        harness = start_service(service, test_settings(tmp))
        text = harness.client.get("/metrics").text
        for family in text_string_to_metric_families(text):
            names.add(family.name)
            names.update(family.name + s for s in SUFFIXES.get(family.type, ()))
            names.update(sample.name for sample in family.samples)
    return names


def _rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_every_alert_rule_is_complete_and_names_exported_metrics(exported):
    rules = _rules()
    assert rules
    named: set[str] = set()
    for rule in rules:
        assert {"alert", "expr", "labels", "annotations"} <= set(rule), rule
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule
        assert rule["annotations"]["summary"], rule
        metrics = set(METRIC.findall(rule["expr"]))
        assert metrics, f"{rule['alert']} names no hai_ metric"
        assert metrics <= exported, f"{rule['alert']}: {metrics - exported} not exported"
        named |= metrics
    assert WATCHED <= named, f"no rule watches {WATCHED - named}"


def test_promtool_accepts_the_rules():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus); the rules are parsed "
                    "by the test above")
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_panel_plots_exported_metrics(exported):
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["panels"]
    plotted: set[str] = set()
    for panel in dashboard["panels"]:
        exprs = [t["expr"] for t in panel["targets"]]
        metrics = {m for e in exprs for m in METRIC.findall(e)}
        assert metrics, f"panel {panel['title']!r} plots no hai_ metric"
        assert metrics <= exported, f"panel {panel['title']!r}: {metrics - exported} not exported"
        plotted |= metrics
    assert WATCHED - {"hai_http_requests_total"} <= plotted, WATCHED - plotted
