"""The Redis configurations the Kubernetes components ship, read from the manifests.

The ``shipped-`` scenarios run these, so that the fault suite measures what a
deployment gets (docs/guarantees.md, "Network faults"): a change to a
manifest's replica count, timeouts, write guard or ``REDIS_REPLICA_ACKS`` is
measured as it ships.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .deployments import Timing
from .net import ROOT

COMPONENTS = ROOT / "k8s" / "components"


@dataclass(frozen=True, slots=True)
class Shipped:
    replicas: int  # per primary
    acks: int  # REDIS_REPLICA_ACKS
    timing: Timing


def sentinel() -> Shipped:
    """k8s/components/redis-sentinel: the Bitnami chart's values and the workers' settings."""
    values = _yaml(COMPONENTS / "redis-sentinel" / "bitnami-values.yaml")
    config = _config_data(COMPONENTS / "redis-sentinel" / "configmap-sentinel.yaml")
    directives = dict(
        line.split(" ", 1) for line in values["commonConfiguration"].splitlines() if " " in line
    )
    guard = ("--min-replicas-to-write", directives["min-replicas-to-write"],
             "--min-replicas-max-lag", directives["min-replicas-max-lag"])  # fmt: skip
    timing = Timing(
        down_after_ms=int(values["sentinel"]["downAfterMilliseconds"]),
        failover_timeout_ms=int(values["sentinel"]["failoverTimeout"]),
        guard=guard,
    )
    # replicaCount counts every Redis node, the primary among them.
    return Shipped(values["replica"]["replicaCount"] - 1, int(config["REDIS_REPLICA_ACKS"]), timing)


def cluster() -> Shipped:
    """k8s/components/redis-cluster: the nodes' options, the init Job's replicas per
    primary, and the workers' settings."""
    documents = _yaml_all(COMPONENTS / "redis-cluster" / "redis-cluster.yaml")
    statefulset = next(d for d in documents if d["kind"] == "StatefulSet")
    args = statefulset["spec"]["template"]["spec"]["containers"][0]["args"]
    init = (COMPONENTS / "redis-cluster" / "redis-cluster-init.yaml").read_text()
    found = re.search(r"--cluster-replicas (\d+)", init)
    assert found is not None, "the init Job names no --cluster-replicas"
    config = _config_data(COMPONENTS / "redis-cluster" / "configmap-redis-cluster.yaml")

    def option(name: str) -> str:
        return str(args[args.index(name) + 1])

    guard = ("--min-replicas-to-write", option("--min-replicas-to-write"),
             "--min-replicas-max-lag", option("--min-replicas-max-lag"))  # fmt: skip
    timing = Timing(node_timeout_ms=int(option("--cluster-node-timeout")), guard=guard)
    return Shipped(int(found.group(1)), int(config["REDIS_REPLICA_ACKS"]), timing)


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _yaml_all(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _config_data(path: Path) -> dict[str, str]:
    data: dict[str, str] = _yaml(path)["data"]
    return data
