"""A real Prometheus beside the local cluster: it scrapes every worker and loads ws-counter's
alert rules (tools/monitoring/rules.yml, the file every Prometheus we ship uses)."""

from __future__ import annotations

import argparse
import json
import urllib.parse
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any

from .processes import Child, free_port
from .redisserver import READY_TIMEOUT, require_binary

RULES = resources.files(__package__).joinpath("monitoring/rules.yml")
# The job name the rules know workers by (WsCounterWorkerNotReady reads up{job=...}).
JOB = "ws-counter"


def prometheus_config(targets: list[str], rules: Path, interval: float) -> str:
    """prometheus.yml for ``targets`` (host:port of each worker), as JSON, which is YAML."""
    seconds = f"{interval:g}s"
    return json.dumps(
        {
            "global": {"scrape_interval": seconds, "evaluation_interval": seconds},
            "rule_files": [str(rules)],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": targets}]}],
        },
        indent=2,
    )


def is_prometheus_ready(line: str) -> bool:
    return "Server is ready to receive web requests" in line


class Prometheus:
    """One Prometheus process on loopback, its data in ``directory``, stopped by pid."""

    def __init__(self, directory: Path, targets: list[str], interval: float = 5.0) -> None:
        self.directory = directory
        self.targets = targets
        self.interval = interval
        self.port = free_port()
        self.child: Child | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_path: Path | None = None) -> Prometheus:
        binary = require_binary("prometheus", "prometheus")
        self.directory.mkdir(parents=True, exist_ok=True)
        rules = self.directory / "rules.yml"
        rules.write_text(RULES.read_text())
        config = self.directory / "prometheus.yml"
        config.write_text(prometheus_config(self.targets, rules, self.interval))
        self.child = Child(
            "prometheus",
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            log_path=log_path,
        ).start()
        self.child.wait_for_line(is_prometheus_ready, READY_TIMEOUT)
        return self

    def query(self, expression: str) -> list[dict[str, Any]]:
        """The instant vector ``expression`` gives now."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        with urllib.request.urlopen(url, timeout=10) as response:
            document = json.loads(response.read())
        result: list[dict[str, Any]] = document["data"]["result"]
        return result

    def alerts_page(self) -> str:
        """The URL of the page listing the alerts: ``/alerts`` in the web UI, which
        Debian's build leaves out (404) and serves only as ``/classic/alerts``."""
        for path in ("/alerts", "/classic/alerts"):
            try:
                with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
                    if response.status == 200:
                        return f"{self.url}{path}"
            except OSError:
                continue
        return f"{self.url}/api/v1/alerts"

    def firing(self) -> set[str]:
        """Names of the alerts firing now."""
        with urllib.request.urlopen(f"{self.url}/api/v1/alerts", timeout=10) as response:
            alerts = json.loads(response.read())["data"]["alerts"]
        return {alert["labels"]["alertname"] for alert in alerts if alert["state"] == "firing"}

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()


PROMETHEUS_RULE_HEAD = """\
# Generated from tools/monitoring/rules.yml by `python -m ws_counter.tools.monitor > this file`;
# tests/test_monitoring.py keeps the two equal. For the Prometheus Operator: its
# ruleSelector must match these labels (kube-prometheus-stack: release=<its release>).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: ws-counter
  labels:
    app.kubernetes.io/name: ws-counter
    app.kubernetes.io/component: worker
    release: prometheus
spec:
"""


def prometheus_rule(rules: str) -> str:
    """The PrometheusRule that carries ``rules`` (the text of a rules file): its groups,
    indented under ``spec``, its leading comment left out."""
    body = rules[rules.index("groups:") :]
    return PROMETHEUS_RULE_HEAD + "".join(
        f"  {line}" if line.strip() else line for line in body.splitlines(keepends=True)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ws_counter.tools.monitor",
        description="Print the PrometheusRule of k8s/components/monitoring, generated from"
        " tools/monitoring/rules.yml (redirect it into prometheusrule.yaml).",
    )
    parser.parse_args(argv)
    print(prometheus_rule(RULES.read_text()), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
