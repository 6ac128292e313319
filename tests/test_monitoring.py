"""The operator's view: alert rules with promtool unit tests, the dashboard, the Prometheus
Operator's objects, and a real Prometheus scraping a real cluster under load.

Needs Debian's prometheus package (Prometheus and promtool).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ws_counter.tools.cluster import ClusterOptions, LocalCluster
from ws_counter.tools.monitor import RULES, Prometheus, prometheus_rule
from ws_counter.tools.processes import free_port
from ws_counter.worker.metrics import Metrics

from .conftest import http_get, seconds
from .deploy import ROOT

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "ws-counter.json"
PROMETHEUS_RULE = ROOT / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"


def promtool(*args: str) -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed (apt-get install -y prometheus)")
    result = subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=seconds(60), check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def alerts_of(rules: dict[str, object]) -> list[str]:
    groups = rules["groups"]
    assert isinstance(groups, list)
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def test_every_alert_has_a_promtool_test_and_they_pass() -> None:
    alerts = alerts_of(yaml.safe_load(RULES.read_text()))
    tests = yaml.safe_load((PROMETHEUS_DIR / "rules.test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    assert set(alerts) == tested
    # Each test also feeds series that must not fire: a second instance, or a time before.
    for test in tests:
        instances = {re.search(r'instance="(\w+)"', s["series"]) for s in test["input_series"]}
        quiet = any(case["exp_alerts"] == [] for case in test["alert_rule_test"])
        assert len(instances) > 1 or quiet, test["name"]
    assert "SUCCESS" in promtool("test", "rules", str(PROMETHEUS_DIR / "rules.test.yml"))


def test_the_shipped_rules_and_configuration_pass_promtool(tmp_path: Path) -> None:
    assert "SUCCESS: 16 rules found" in promtool("check", "rules", str(RULES))
    assert (PROMETHEUS_DIR / "rules.yml").resolve() == Path(str(RULES)).resolve()
    # The compose configuration, its container path made this machine's.
    config = (PROMETHEUS_DIR / "prometheus.yml").read_text()
    local = tmp_path / "prometheus.yml"
    local.write_text(config.replace("/etc/prometheus/rules.yml", str(RULES)))
    promtool("check", "config", str(local))


def test_the_prometheus_rule_is_the_rules_file() -> None:
    """k8s/components/monitoring's PrometheusRule is generated from the one rules file."""
    assert PROMETHEUS_RULE.read_text() == prometheus_rule(RULES.read_text())
    resource = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert resource["spec"] == yaml.safe_load(RULES.read_text())


def test_every_alert_links_a_runbook_section_that_exists() -> None:
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    sections = {line.removeprefix("## ").strip().lower() for line in runbooks.splitlines()
                if line.startswith("## ")}  # fmt: skip
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            link = rule["annotations"]["runbook_url"]
            assert link == f"docs/runbooks.md#{rule['alert'].lower()}", rule["alert"]
            assert rule["alert"].lower() in sections, f"docs/runbooks.md has no {rule['alert']}"


def test_the_worker_alerts_name_only_exported_metrics() -> None:
    expressions = [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"]
                   for rule in group["rules"]]  # fmt: skip
    named = {name for e in expressions for name in re.findall(r"\bws_counter_\w+", e)}
    assert named and named - exported_metric_names() == set()


SERIES_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
}


def exported_metric_names() -> set[str]:
    """The series names a worker exports, from its metrics' registry (labelled families
    too, which show no sample until a label is used)."""

    class Idle:
        http_connections = ()
        ready = True
        redis_up = True

        def connection_count(self) -> int:
            return 0

    metrics = Metrics(Idle(), 100)
    metrics.count_task_failures(dict)
    metrics.export_certificate_expiry(dict)
    families = metrics.registry.collect()
    return {f"{f.name}{suffix}" for f in families for suffix in SERIES_SUFFIXES[f.type]}


def test_the_dashboard_parses_and_names_only_exported_metrics(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(dashboard["panels"]) >= 6 and len(expressions) >= 10
    # promtool parses every expression, as recording rules.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{n}", "expr": expression}
        for n, expression in enumerate(expressions)
    ]}]}  # fmt: skip
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    promtool("check", "rules", str(path))
    named = {name for e in expressions for name in re.findall(r"\bws_counter_\w+", e)}
    assert named - exported_metric_names() == set()
    titles = " ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for family in ("increments", "ack", "fan-out", "connections", "conflated", "redis errors"):
        assert family in titles


def test_a_real_prometheus_counts_the_load_tests_acks_and_alerts_when_redis_stops(
    tmp_path: Path,
) -> None:
    options = ClusterOptions(workers=2, port=free_port(), monitor=1.0, log_dir=tmp_path)
    with LocalCluster(options) as cluster:
        prometheus = cluster.prometheus
        assert prometheus is not None
        report_path = tmp_path / "report.json"
        load = subprocess.run(
            [sys.executable, "-m", "ws_counter.tools", "loadtest", cluster.url, "--clients", "20",
             "--increments", "25", "--counter", "monitored", "--json", str(report_path)],
            capture_output=True, text=True, timeout=seconds(120), check=False,
        )  # fmt: skip
        assert load.returncode == 0, load.stdout
        acked = json.loads(report_path.read_text())["increments_acked"]
        assert acked == 500
        applied = 'sum(ws_counter_increments_total{outcome="applied"})'
        assert _eventually(lambda: _value(prometheus, applied) == acked, 20), (
            f"Prometheus counted {_value(prometheus, applied)} applied, the load test {acked}"
        )
        assert "WsCounterRedisUnavailable" not in prometheus.firing()
        # The alerts page the banner prints is one this Prometheus serves.
        status, _ = http_get(prometheus.alerts_page())
        assert status == 200, prometheus.alerts_page()
        cluster.stop_redis()
        # The rule holds for 15 s; scrapes and evaluations come every second.
        assert _eventually(lambda: "WsCounterRedisUnavailable" in prometheus.firing(), 45)


def _value(prometheus: Prometheus, expression: str) -> float | None:
    result = prometheus.query(expression)
    return float(result[0]["value"][1]) if result else None


def _eventually(check: object, timeout: float) -> bool:
    """True once ``check()`` is; Prometheus has no event to wait on, so this asks again at
    its evaluation interval, for at most ``timeout`` seconds."""
    assert callable(check)
    deadline = time.monotonic() + seconds(timeout)
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(1.0)
    return bool(check())
