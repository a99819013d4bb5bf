"""The Prometheus configuration and alert rules pass promtool (syntax, and unit tests that make each
rule fire and not fire); the Grafana dashboard is a well-formed dashboard whose every query names
only metrics the platform exports. (The end-to-end test runs every query against a real Prometheus.)"""

import json
import re
import subprocess

import pytest
import yaml

from churn_platform_tests.observability.prometheus import REPO_ROOT, require

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "churn_platform.json"
SOURCES = [REPO_ROOT / "churn_platform" / "observability" / name for name in ("collector.py", "push.py")]
SECTIONS = ["Pipeline health", "Data freshness", "Model quality", "Drift"]


def promtool(*args: str) -> str:
    result = subprocess.run(
        [require("promtool"), *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_the_example_configuration_and_the_rules_are_valid():
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")
    assert "SUCCESS: 15 rules found" in promtool("check", "rules", "alerts.yml")


def test_every_alert_fires_in_its_situation_and_not_otherwise():
    """alerts_test.yml: failed and stale runs, a queue not draining, stale data (features whose lag
    grows past 28 h), a late metadata backup, a quarantine rate, a failed check, no champion, a champion
    too old or too weak, drift, and the exporter down or never scraped."""
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")
    tested = set(re.findall(r"alertname: (\w+)", (PROMETHEUS_DIR / "alerts_test.yml").read_text()))
    defined = set(re.findall(r"- alert: (\w+)", (PROMETHEUS_DIR / "alerts.yml").read_text()))
    assert tested == defined


def exported_names() -> set[str]:
    """Every metric name the collector and the push hooks declare (counters also as ..._total)."""
    names = set()
    for source in SOURCES:
        names |= set(re.findall(r'"(churn_[a-z0-9_]+)"', source.read_text()))
    return names | {f"{name}_total" for name in names}


def referenced_names(text: str) -> set[str]:
    """Metric names in a query (not label values such as ml/churn_scores or "churn_platform_exporter")."""
    return set(re.findall(r'(?<![\w/"])(churn_[a-z0-9_]+)', text))


def dashboard_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels if p["type"] != "row" for t in p["targets"]]


def rule_queries() -> list[str]:
    """Each rule's expression, and the queries its annotations run."""
    rules = [
        r for g in yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"] for r in g["rules"]
    ]
    return [r["expr"] for r in rules] + [
        q
        for r in rules
        for text in r["annotations"].values()
        for q in re.findall(r'query \\?"([^"\\]+)', text)
    ]


def test_the_rules_and_the_dashboard_name_only_exported_metrics():
    exported = exported_names()
    queries = rule_queries() + [expr for _, expr in dashboard_queries()]
    assert "churn_champion_version" in queries  # the annotation's query is seen
    for text in queries:
        assert referenced_names(text) <= exported, referenced_names(text) - exported


def test_the_dashboard_is_a_grafana_dashboard_with_the_four_sections():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    [variable] = dashboard["templating"]["list"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    panels = dashboard["panels"]
    assert [p["title"] for p in panels if p["type"] == "row"] == SECTIONS
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    occupied = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        cells = {(grid["y"] + dy, grid["x"] + dx) for dy in range(grid["h"]) for dx in range(grid["w"])}
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"stat", "timeseries", "bargauge", "table", "gauge"}
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"]
            assert "$" not in target["expr"], "queries must run as they are in Prometheus (tested end to end)"


@pytest.mark.parametrize("path", ["prometheus.yml", "alerts.yml", "alerts_test.yml"])
def test_deploy_files_name_no_secret(path):
    text = (PROMETHEUS_DIR / path).read_text().lower()
    assert "password" not in text and "token" not in text
