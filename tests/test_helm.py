"""The Helm chart renders the same objects as the kustomize components, for every choice
of values, passes helm lint, and is what python -m ws_counter.tools.helmchart writes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ws_counter.tools.helmchart import CHART, NAMESPACE, choices, main, render, values_of

from .deploy import KUBERNETES_VERSIONS, run, tool


def helm_template(values: dict[str, Any], *extra: str) -> list[dict[str, Any]]:
    settings = [part for key, value in values.items()
                for part in ("--set", f"{key}={str(value).lower()}")]  # fmt: skip
    output = run(tool("helm"), "template", "ws-counter", str(CHART), "--namespace", NAMESPACE,
                 *settings, *extra).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(output) if d]


def by_identity(resources: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["kind"], r["metadata"]["name"]): r for r in resources}


def test_the_chart_is_what_the_generator_writes() -> None:
    assert main(["--check"]) == 0, "run python -m ws_counter.tools.helmchart"


def test_helm_lint_passes_for_every_kubernetes_version_we_claim() -> None:
    for version in KUBERNETES_VERSIONS:
        run(tool("helm"), "lint", str(CHART), "--strict", "--kube-version", version)


@pytest.mark.parametrize("choice", choices(), ids=lambda c: "-".join(map(str, c)))
def test_the_chart_renders_the_same_objects_as_the_components(choice: tuple[Any, ...]) -> None:
    expected = by_identity(render(choice, tool("kubectl")))
    rendered = by_identity(helm_template(values_of(choice)))
    assert sorted(rendered) == sorted(expected)
    for identity, resource in expected.items():
        assert rendered[identity] == resource, identity


def test_values_set_the_namespace_image_and_secrets(tmp_path: Path) -> None:
    values = {"redis.mode": "sentinel", "image.repository": "mirror.local/wsc",
              "image.tag": "1.2.3", "auth.existingSecret": "tokens",
              "redis.sentinel.existingSecret": "chart-password"}  # fmt: skip
    output = run(tool("helm"), "template", "x", str(CHART), "--namespace", "elsewhere",
                 *(p for k, v in values.items() for p in ("--set", f"{k}={v}"))).stdout  # fmt: skip
    resources = [d for d in yaml.safe_load_all(output) if d]
    assert {r["metadata"].get("namespace") for r in resources} == {"elsewhere"}
    deployment = next(r for r in resources if r["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "mirror.local/wsc:1.2.3"
    refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in pod["containers"][0]["env"]
            if "secretKeyRef" in e.get("valueFrom", {})]  # fmt: skip
    assert refs == ["tokens"]
    assert "chart-password" in [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
    wrong = run_failing(tool("helm"), "template", "x", str(CHART), "--set", "redis.mode=etcd")
    assert "redis.mode" in wrong
    refused = run_failing(tool("helm"), "template", "x", str(CHART), "--set",
                          "redis.mode=sentinel", "--set", "redis.tls=cert-manager")  # fmt: skip
    assert "takes its certificates itself" in refused


def run_failing(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0, result.stdout
    return result.stderr
