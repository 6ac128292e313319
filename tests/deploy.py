"""Reading the deployment files the way the tests need them: compose, k8s, tools."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
# The compose one, and the local cluster's, which ships inside the tools package.
HAPROXY_CONFIGS = [
    ROOT / "deploy" / "haproxy" / "compose.cfg",
    ROOT / "tools" / "haproxy-local.cfg",
]
COMPONENTS = ROOT / "k8s" / "components"
KUSTOMIZATIONS = [
    ROOT / "k8s",
    ROOT / "k8s" / "overlays" / "sentinel",
    ROOT / "k8s" / "overlays" / "redis-cluster",
    ROOT / "k8s" / "overlays" / "monitoring",
    ROOT / "k8s" / "overlays" / "gateway-api",
    ROOT / "k8s" / "jobs" / "loadtest",
    ROOT / "k8s" / "examples" / "custom-metrics-hpa",
    ROOT / "k8s" / "examples" / "cert-manager",
]
REDIS_CLUSTER_COMPOSE_FILE = ROOT / "deploy" / "compose.redis-cluster.yml"
# The oldest and newest Kubernetes versions the manifests claim (k8s/kustomization.yaml).
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")


def tool(name: str) -> str:
    """A command from the project's virtualenv, else from PATH; a missing one fails the test."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `bash scripts/dev.sh test`, which installs it")
    return found


def run(
    *argv: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a checker and fail the test with its output when it finds a problem."""
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT, env=env
    )
    if result.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return document


def render_kustomization(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize` output as a list of resources."""
    output = run(tool("kubectl"), "kustomize", str(directory)).stdout
    return [document for document in yaml.safe_load_all(output) if document]


def find_resource(resources: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The resource of ``kind`` named ``name``, or generated from that name (a
    configMapGenerator adds a hash of the contents: ``name-<10 characters>``)."""
    for resource in resources:
        given = resource["metadata"]["name"]
        generated = re.fullmatch(rf"{re.escape(name)}-[a-z0-9]{{10}}", given) is not None
        if resource["kind"] == kind and (given == name or generated):
            return resource
    raise AssertionError(f"no {kind} {name} in the rendered manifests")
