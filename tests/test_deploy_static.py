"""Static checks of the Dockerfile, docker-compose.yml, HAProxy configs and k8s manifests.

No Docker engine or Kubernetes cluster exists where these run, so every file
is checked by the tool that knows its format; tests/test_containers.py and
tests/test_topology.py then run the same topology for real.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ws_counter.tools.makesecrets import redis_config
from ws_counter.tools.redissecurity import WORKER_USER
from ws_counter.tools.redisserver import REDIS_OPTIONS
from ws_counter.worker.store.acl import WORKER_ACL_RULES

from .deploy import (
    COMPOSE_FILE,
    HAPROXY_CONFIGS,
    KUBERNETES_VERSIONS,
    KUSTOMIZATIONS,
    REDIS_CLUSTER_COMPOSE_FILE,
    ROOT,
    compose,
    find_resource,
    render_kustomization,
    run,
    tool,
)


def test_dockerfile_passes_hadolint() -> None:
    run(tool("hadolint"), "--failure-threshold", "info", str(ROOT / "Dockerfile"))


@pytest.mark.parametrize("path", [COMPOSE_FILE, *sorted((ROOT / "deploy").glob("compose.*.yml"))],
                         ids=lambda path: path.name)  # fmt: skip
def test_compose_files_match_the_compose_spec(path: Path) -> None:
    run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path))


def test_redis_cluster_compose_file_matches_the_compose_spec() -> None:
    run(
        tool("check-jsonschema"),
        "--builtin-schema",
        "vendor.compose-spec",
        str(REDIS_CLUSTER_COMPOSE_FILE),
    )


def test_redis_cluster_variants_keep_the_redis_options() -> None:
    """The compose variant and the k8s overlay run cluster nodes with the single Redis'
    persistence and noeviction bound, keep serving other shards during a failover, and point
    the workers at the cluster instead of REDIS_URL."""
    services = yaml.safe_load(REDIS_CLUSTER_COMPOSE_FILE.read_text())["services"]
    nodes = [service for name, service in services.items() if name.startswith("redis-")]
    commands = [
        service["command"]
        for service in nodes
        if "command" in service and service["command"][0] == "redis-server"
    ]
    assert len(commands) == 6
    resources = render_kustomization(ROOT / "k8s" / "overlays" / "redis-cluster")
    statefulset = find_resource(resources, "StatefulSet", "redis-cluster")
    # Compose's six for trying it; the component's nine for production (docs/operations.md).
    assert statefulset["spec"]["replicas"] == 9
    args = statefulset["spec"]["template"]["spec"]["containers"][0]["args"]
    for command in [*commands, args]:
        options = command[2:] if command[1] == "/secrets/redis.conf" else command[1:]
        assert tuple(options[: len(REDIS_OPTIONS)]) == REDIS_OPTIONS
        assert command[command.index("--cluster-enabled") + 1] == "yes"
        assert command[command.index("--cluster-require-full-coverage") + 1] == "no"
    find_resource(resources, "Job", "redis-cluster-init")
    config = find_resource(resources, "ConfigMap", "ws-counter-worker")["data"]
    deployment = find_resource(resources, "Deployment", "ws-counter-worker")
    env = {e["name"]: e.get("value") for e in
           deployment["spec"]["template"]["spec"]["containers"][0]["env"]}  # fmt: skip
    assert "REDIS_URL" not in config and env["REDIS_CLUSTER_NODES"].count(":6379") == 3
    worker = services["worker"]["environment"]
    assert "REDIS_URL" not in worker and worker["REDIS_CLUSTER_NODES"].count(":6379") == 3
    assert not [
        r for r in resources if r["kind"] == "StatefulSet" and r["metadata"]["name"] == "redis"
    ]


def test_yaml_passes_yamllint() -> None:
    run(tool("yamllint"), "--strict", ".")


@pytest.mark.parametrize("config", HAPROXY_CONFIGS, ids=lambda path: path.name)
def test_haproxy_config_is_valid(config: Path) -> None:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.fail("haproxy is not installed (apt-get install -y haproxy)")
    # haproxy-local.cfg takes its addresses from the environment, as `ws-counter cluster` sets it.
    env = {**os.environ, "LB_BIND": "127.0.0.1:8080", "WS_WORKER_1": "127.0.0.1:9001"}
    run(haproxy, "-c", "-f", str(config), env=env)


def test_haproxy_configs_cover_the_deploy_folder() -> None:
    shipped = {path.name for path in (ROOT / "deploy" / "haproxy").glob("*.cfg")}
    shipped |= {path.name for path in (ROOT / "tools").glob("*.cfg")}
    assert {path.name for path in HAPROXY_CONFIGS} == shipped


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_validate_strictly(version: str, tmp_path: Path) -> None:
    manifests = [
        str(path)
        for path in sorted((ROOT / "k8s").rglob("*.yaml"))
        # Components hold patches and values files: tests/test_k8s_components.py
        # renders and validates every combination of them.
        if path.name != "kustomization.yaml" and not {"overlays", "components"} & set(path.parts)
    ]
    run(tool("kubernetes-validate"), "--strict", "-k", version, "--quiet", *manifests)
    for directory in KUSTOMIZATIONS:
        rendered = tmp_path / f"{directory.name}.yaml"
        rendered.write_text(run(tool("kubectl"), "kustomize", str(directory)).stdout)
        run(tool("kubernetes-validate"), "--strict", "-k", version, "--quiet", str(rendered))


def test_redis_persistence_and_memory_are_the_same_everywhere() -> None:
    """Compose, the k8s StatefulSet and the local cluster all fsync AOF on every write and
    bound Redis' memory with noeviction, never an eviction policy."""
    compose_command = compose()["services"]["redis"]["command"]
    assert compose_command[:2] == ["redis-server", "/secrets/redis.conf"]
    assert tuple(compose_command[2 : 2 + len(REDIS_OPTIONS)]) == REDIS_OPTIONS
    statefulset = find_resource(render_kustomization(ROOT / "k8s"), "StatefulSet", "redis")
    args = statefulset["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["redis-server", "/secrets/redis.conf"]
    assert tuple(args[2 : 2 + len(REDIS_OPTIONS)]) == REDIS_OPTIONS
    assert REDIS_OPTIONS[REDIS_OPTIONS.index("--maxmemory-policy") + 1] == "noeviction"


def test_sentinel_overlay_points_workers_at_sentinels() -> None:
    resources = render_kustomization(ROOT / "k8s" / "overlays" / "sentinel")
    config = find_resource(resources, "ConfigMap", "ws-counter-worker")["data"]
    assert config["REDIS_SENTINELS"].count(":26379") == 3
    assert config["REDIS_MASTER_NAME"]
    assert not [r for r in resources if r["kind"] == "StatefulSet"]


def test_compose_runs_redis_on_tls_with_the_least_privilege_user() -> None:
    """Redis takes TLS only with the ACL file make-secrets writes; workers log in as its
    worker user over TLS, checking Redis' certificate against the deployment's CA."""
    services = compose()["services"]
    config = dict(line.split(" ", 1) for line in redis_config(Path("/secrets"), "pw").splitlines())
    assert config["port"] == "0" and config["tls-port"] == "6379"
    assert config["aclfile"] == "/secrets/users.acl"
    assert services["redis"]["command"][1] == "/secrets/redis.conf"
    assert services["secrets"]["entrypoint"] == [
        "ws-counter",
        "make-secrets",
        "--shared-volume",
        "/secrets",
    ]
    environment = services["worker"]["environment"]
    assert environment["REDIS_URL"].startswith("rediss://redis:")
    assert environment["REDIS_USERNAME"] == WORKER_USER
    assert environment["REDIS_PASSWORD_FILE"] == "/secrets/worker-password"
    assert environment["REDIS_TLS_CA_FILE"] == config["tls-ca-cert-file"]


def test_kubernetes_runs_redis_on_tls_with_the_least_privilege_user() -> None:
    """Base and Redis Cluster overlay: Redis includes the Secret's redis.conf (TLS only, the
    ACL file); workers mount only the CA and their own password from it and use them."""
    base = render_kustomization(ROOT / "k8s")
    config = find_resource(base, "ConfigMap", "ws-counter-worker")["data"]
    assert config["REDIS_URL"].startswith("rediss://")
    assert config["REDIS_USERNAME"] == WORKER_USER
    worker = find_resource(base, "Deployment", "ws-counter-worker")["spec"]["template"]["spec"]
    (credentials,) = [v for v in worker["volumes"] if v["name"] == "redis-credentials"]
    keys = {item["key"] for item in credentials["secret"]["items"]}
    assert keys == {"ca.crt", "worker-password"}
    mount = next(
        m for m in worker["containers"][0]["volumeMounts"] if m["name"] == "redis-credentials"
    )
    assert config["REDIS_PASSWORD_FILE"] == f"{mount['mountPath']}/worker-password"
    assert config["REDIS_TLS_CA_FILE"] == f"{mount['mountPath']}/ca.crt"
    cluster = render_kustomization(ROOT / "k8s" / "overlays" / "redis-cluster")
    for resources, name in ((base, "redis"), (cluster, "redis-cluster")):
        pod = find_resource(resources, "StatefulSet", name)["spec"]["template"]["spec"]
        assert pod["containers"][0]["args"][1] == "/secrets/redis.conf"
        (secrets,) = [v for v in pod["volumes"] if v["name"] == "secrets"]
        assert secrets["secret"]["secretName"] == credentials["secret"]["secretName"]
        probe = " ".join(pod["containers"][0]["readinessProbe"]["exec"]["command"])
        # Over TLS, and judged by the reply: redis-cli exits 0 on an error reply too.
        assert "--tls" in probe and "grep -qx PONG" in probe
    cluster_config = find_resource(cluster, "ConfigMap", "ws-counter-worker")["data"]
    assert cluster_config["REDIS_TLS"] == "true" and "REDIS_URL" not in cluster_config


def test_the_sentinel_overlay_takes_the_bitnami_charts_password() -> None:
    """The default user with the chart's password, shared by the Sentinels, and TLS to both
    with the CA of the chart's certificates (bitnami-values.yaml turns TLS on). The values
    file's ACL user is the worker's least privilege."""
    resources = render_kustomization(ROOT / "k8s" / "overlays" / "sentinel")
    config = find_resource(resources, "ConfigMap", "ws-counter-worker")["data"]
    assert not {"REDIS_URL", "REDIS_USERNAME"} & set(config)
    assert config["REDIS_PASSWORD_FILE"] == config["REDIS_SENTINEL_PASSWORD_FILE"]
    assert (config["REDIS_TLS"], config["REDIS_SENTINEL_TLS"]) == ("true", "true")
    worker = find_resource(resources, "Deployment", "ws-counter-worker")["spec"]["template"]
    (credentials,) = [v for v in worker["spec"]["volumes"] if v["name"] == "redis-credentials"]
    assert credentials["secret"]["secretName"] == "ws-counter-redis-auth"
    paths = {item["path"] for item in credentials["secret"]["items"]}
    mounted = {config["REDIS_PASSWORD_FILE"].rsplit("/", 1)[1],
               config["REDIS_TLS_CA_FILE"].rsplit("/", 1)[1]}  # fmt: skip
    assert paths == mounted
    values = yaml.safe_load(
        (ROOT / "k8s/components/redis-sentinel/bitnami-values.yaml").read_text()
    )
    assert values["tls"]["enabled"] is True
    assert values["sentinel"]["downAfterMilliseconds"] <= 2000
    (user,) = values["auth"]["acl"]["users"]
    rules = f"resetkeys {user['keys']} resetchannels {user['channels']} {user['commands']}"
    assert (user["username"], rules) == (WORKER_USER, WORKER_ACL_RULES)


def test_the_gateway_api_route_serves_the_ingress_paths_and_no_more() -> None:
    """k8s/overlays/gateway-api: an HTTPRoute in place of the Ingress, with its public paths,
    and the workers' NetworkPolicy admitting the Gateway's namespace."""
    base = render_kustomization(ROOT / "k8s")
    ingress = find_resource(base, "Ingress", "ws-counter")
    (rule,) = ingress["spec"]["rules"]
    kinds = {"Exact": "Exact", "Prefix": "PathPrefix"}
    wanted = {(kinds[p["pathType"]], p["path"]) for p in rule["http"]["paths"]}
    assert "/metrics" not in {path for _, path in wanted}
    resources = render_kustomization(ROOT / "k8s" / "overlays" / "gateway-api")
    assert not [r for r in resources if r["kind"] == "Ingress"]
    route = find_resource(resources, "HTTPRoute", "ws-counter")
    (route_rule,) = route["spec"]["rules"]
    assert {(m["path"]["type"], m["path"]["value"]) for m in route_rule["matches"]} == wanted
    # A WebSocket is one long request: no implementation's default timeout cuts it.
    assert route_rule["timeouts"] == {"request": "0s"}
    policy = find_resource(resources, "NetworkPolicy", "worker-ingress")
    fronts = policy["spec"]["ingress"][0]["from"]
    selectors = [(next(iter(f)), f[next(iter(f))]["matchLabels"]) for f in fronts]
    assert ("namespaceSelector", {"ws-counter.example.com/front": "true"}) in selectors
    # GEP-1762 implementations run the proxy beside the workers, labelled by Gateway.
    gateway_pods = {"gateway.networking.k8s.io/gateway-name": "ws-counter"}
    assert ("podSelector", gateway_pods) in selectors
    proxy = find_resource(resources, "NetworkPolicy", "gateway-proxy")["spec"]
    assert proxy["podSelector"]["matchLabels"] == gateway_pods
    assert proxy["egress"][0]["ports"] == [{"protocol": "TCP", "port": 8000}]


def checkov() -> str:
    binary = os.environ.get("CHECKOV") or shutil.which("checkov")
    if not binary:
        pytest.fail("checkov is not installed: bash scripts/dev.sh test installs it")
    return binary


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda path: str(path.relative_to(ROOT)))
def test_checkov_passes_every_rendered_kustomization(directory: Path, tmp_path: Path) -> None:
    """Every check fails nothing or is skipped with a one-line reason on the resource."""
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(run(tool("kubectl"), "kustomize", str(directory)).stdout)
    result = subprocess.run(
        [checkov(), "-f", str(rendered), "--framework", "kubernetes", "--compact",
         "--quiet", "--skip-download"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Failed checks: 0" in result.stdout or "Passed checks" not in result.stdout


def test_checkov_passes_the_dockerfile() -> None:
    result = subprocess.run(
        [checkov(), "-f", str(ROOT / "Dockerfile"), "--framework", "dockerfile", "--compact",
         "--quiet", "--skip-download"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_monitoring_overlay_runs_redis_exporter_beside_redis() -> None:
    resources = render_kustomization(ROOT / "k8s" / "overlays" / "monitoring")
    redis = find_resource(resources, "StatefulSet", "redis")["spec"]["template"]["spec"]
    assert sorted(c["name"] for c in redis["containers"]) == ["redis", "redis-exporter"]
    find_resource(resources, "PodMonitor", "ws-counter-redis")
    find_resource(resources, "ServiceMonitor", "ws-counter")
    assert all(r["metadata"].get("namespace") == "ws-counter" for r in resources
               if r["kind"] != "Namespace")  # fmt: skip


def test_the_hpa_needs_no_adapter_unless_the_component_adds_its_metrics() -> None:
    """An HPA naming a metric nobody serves never scales down: the base scales on CPU
    alone, and only the custom-metrics component names the adapter's metrics."""

    def metrics(directory: Path) -> list[str]:
        hpa = find_resource(render_kustomization(directory), "HorizontalPodAutoscaler",
                            "ws-counter-worker")  # fmt: skip
        return [m.get("pods", {}).get("metric", {}).get("name", m["type"])
                for m in hpa["spec"]["metrics"]]  # fmt: skip

    assert metrics(ROOT / "k8s") == ["Resource"]
    with_adapter = metrics(ROOT / "k8s" / "examples" / "custom-metrics-hpa")
    assert with_adapter == ["Resource", "ws_counter_connections",
                            "ws_counter_totals_sent_per_second"]  # fmt: skip


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda path: str(path.relative_to(ROOT)))
def test_deleting_a_kustomization_keeps_the_namespace_and_the_redis_volumes(
    directory: Path,
) -> None:
    """`kubectl delete -k` deletes what a kustomization lists: never the Namespace that
    holds the Redis PVCs (applied once from k8s/namespace.yaml), and the StatefulSets
    keep their PVCs when deleted or scaled down."""
    resources = render_kustomization(directory)
    if directory.name != "loadtest":  # the load test's own namespace holds only reports
        assert [r for r in resources if r["kind"] == "Namespace"] == []
    for resource in resources:
        if resource["kind"] == "StatefulSet" and resource["spec"].get("volumeClaimTemplates"):
            policy = resource["spec"]["persistentVolumeClaimRetentionPolicy"]
            assert policy == {"whenDeleted": "Retain", "whenScaled": "Retain"}
