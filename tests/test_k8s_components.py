"""The Kubernetes components combine freely: every choice of Redis topology and front,
with or without monitoring and the custom-metrics HPA, renders, validates strictly on
the oldest and newest Kubernetes we claim, and keeps the namespace it is given."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from .deploy import COMPONENTS, KUBERNETES_VERSIONS, ROOT, run, tool

TOPOLOGIES = ("redis-single", "redis-sentinel", "redis-cluster")
FRONTS = ("ingress", "gateway-api")
OPTIONAL = ("monitoring", "custom-metrics-hpa", "cert-manager", "front-certificate")
# The Sentinel component's Redis is the Bitnami chart's, with its own certificates.
COMBINATIONS = [
    (topology, front, *chosen)
    for topology, front in itertools.product(TOPOLOGIES, FRONTS)
    for count in range(len(OPTIONAL) + 1)
    for chosen in itertools.combinations(OPTIONAL, count)
    if not (topology == "redis-sentinel" and "cert-manager" in chosen)
]


def kustomization(directory: Path, components: tuple[str, ...], namespace: str) -> Path:
    """A user's own kustomization in ``directory``: the base and ``components``."""
    directory.mkdir(parents=True)
    document: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(ROOT / "k8s" / "base", directory)],
        "components": [os.path.relpath(COMPONENTS / name, directory) for name in components],
        "namespace": namespace,
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(document))
    return directory


def render(directory: Path) -> list[dict[str, Any]]:
    output = run(tool("kubectl"), "kustomize", str(directory)).stdout
    return [document for document in yaml.safe_load_all(output) if document]


def test_every_component_is_in_a_combination() -> None:
    shipped = {path.name for path in COMPONENTS.iterdir() if path.is_dir()}
    assert shipped == {*TOPOLOGIES, *FRONTS, *OPTIONAL}


def test_every_combination_renders_and_validates(tmp_path: Path) -> None:
    rendered = []
    for components in COMBINATIONS:
        name = "+".join(components)
        resources = render(kustomization(tmp_path / name, components, "ws-counter"))
        kinds = [r["kind"] for r in resources]
        # One Redis and one front, whatever else comes with them.
        assert kinds.count("Ingress") + kinds.count("HTTPRoute") == 1, name
        assert sum(k == "StatefulSet" for k in kinds) == (
            0 if "redis-sentinel" in components else 1
        )
        assert all(r["metadata"].get("namespace") == "ws-counter" for r in resources), name
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(resources))
        rendered.append(str(path))
    every = len(TOPOLOGIES) * len(FRONTS) * 2 ** len(OPTIONAL)
    assert len(rendered) == every - len(FRONTS) * 2 ** (len(OPTIONAL) - 1)
    for version in KUBERNETES_VERSIONS:
        run(tool("kubernetes-validate"), "--strict", "-k", version, "--quiet", *rendered,
            timeout=600)  # fmt: skip


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_a_namespace_set_once_moves_everything(topology: str, tmp_path: Path) -> None:
    """A kustomization that sets another namespace leaves no name pointing at ws-counter:
    the Redis Cluster's names come from the pod's own namespace."""
    components = (topology, "ingress", "monitoring")
    resources = render(kustomization(tmp_path / topology, components, "counters-elsewhere"))
    assert {r["metadata"].get("namespace") for r in resources} == {"counters-elsewhere"}
    text = yaml.safe_dump_all(resources)
    assert ".ws-counter.svc" not in text and "ws-counter.svc" not in text


@pytest.mark.parametrize("topology", ["redis-single", "redis-cluster"])
def test_cert_manager_gives_redis_and_the_workers_the_files_they_read(
    topology: str, tmp_path: Path
) -> None:
    """The files redis.conf names (/secrets/redis.crt, redis.key, ca.crt) come from the
    Certificate's Secret, the rest from make-secrets' Secret; the Certificate names
    every host a client reaches Redis by; the workers trust its CA."""
    components = (topology, "ingress", "cert-manager")
    resources = render(kustomization(tmp_path / topology, components, "ws-counter"))
    redis = next(r for r in resources if r["kind"] == "StatefulSet")["spec"]["template"]["spec"]
    (volume,) = [v for v in redis["volumes"] if v["name"] == "secrets"]
    sources = [source["secret"] for source in volume["projected"]["sources"]]
    files = {item["path"]: (secret["name"], item["key"])
             for secret in sources for item in secret["items"]}  # fmt: skip
    assert files["redis.crt"] == ("ws-counter-redis-tls", "tls.crt")
    assert files["redis.key"] == ("ws-counter-redis-tls", "tls.key")
    assert files["ca.crt"] == ("ws-counter-redis-tls", "ca.crt")
    assert files["redis.conf"] == ("ws-counter-redis", "redis.conf")
    certificate = next(r for r in resources if r["kind"] == "Certificate")["spec"]
    assert certificate["secretName"] == "ws-counter-redis-tls"
    assert {"redis", "localhost", "*.redis-cluster"} <= set(certificate["dnsNames"])
    # Renewed before the expiry alert (30 days) fires, a year long.
    assert certificate["duration"] == "8760h" and int(certificate["renewBefore"][:-1]) > 720
    worker = next(r for r in resources if r["kind"] == "Deployment")["spec"]["template"]["spec"]
    (credentials,) = [v for v in worker["volumes"] if v["name"] == "redis-credentials"]
    names = {s["secret"]["name"] for s in credentials["projected"]["sources"]}
    assert names == {"ws-counter-redis", "ws-counter-redis-tls"}


@pytest.mark.parametrize("front", FRONTS)
def test_the_front_certificate_fills_the_secret_the_front_serves(
    front: str, tmp_path: Path
) -> None:
    """cert-manager's Certificate writes the Secret the Ingress or the Gateway reads, for
    the host it serves, and is renewed with weeks to spare."""
    components = ("redis-single", front, "front-certificate")
    resources = render(kustomization(tmp_path / front, components, "ws-counter"))
    certificate = next(r for r in resources if r["kind"] == "Certificate")["spec"]
    if front == "ingress":
        ingress = next(r for r in resources if r["kind"] == "Ingress")["spec"]
        ((secret, hosts),) = [(t["secretName"], t["hosts"]) for t in ingress["tls"]]
    else:
        gateway = next(r for r in resources if r["kind"] == "Gateway")["spec"]
        (listener,) = gateway["listeners"]
        secret, hosts = listener["tls"]["certificateRefs"][0]["name"], [listener["hostname"]]
    assert certificate["secretName"] == secret
    assert set(hosts) <= set(certificate["dnsNames"])
    assert certificate["issuerRef"]["kind"] == "ClusterIssuer"
    assert int(certificate["renewBefore"][:-1]) >= 720
