"""The Kubernetes worker as the kubelet would drive it, read from the rendered manifests.

Probe paths and ports, the ConfigMap's settings, the preStop pause and the
grace period all come from `kubectl kustomize k8s/`; only the listening address
and the Redis address are replaced, because no cluster network exists here.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ws_counter.worker.core.auth import issue

from .conftest import RedisServer, WorkerProcess, http_get, seconds
from .deploy import ROOT, find_resource, render_kustomization

PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
# The drain's phases, in order, each at its longest: serve at 503, let increments in
# flight finish (at most the Redis timeout), close spread over a window, wait for the last.
DRAIN_SETTINGS = ("WS_DRAIN_DELAY", "REDIS_TIMEOUT", "WS_DRAIN_SPREAD", "WS_DRAIN_TIMEOUT")


def answers_200(url: str) -> bool:
    try:
        return http_get(url)[0] == 200
    except OSError:
        return False


def worker_pod() -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """The worker's pod spec, its container and the settings its ConfigMap gives it."""
    resources = render_kustomization(ROOT / "k8s")
    deployment = find_resource(resources, "Deployment", "ws-counter-worker")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (source,) = container["envFrom"]
    config = find_resource(resources, "ConfigMap", source["configMapRef"]["name"])["data"]
    return pod, container, config


def test_termination_timeline_fits_the_grace_period() -> None:
    """preStop pause + the drain's worst case < terminationGracePeriodSeconds."""
    pod, container, config = worker_pod()
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pause = float(command[1])
    drain = sum(float(config[name]) for name in DRAIN_SETTINGS)
    assert pause + drain < pod["terminationGracePeriodSeconds"]
    # The rollout never takes a worker away before its replacement is ready.
    resources = render_kustomization(ROOT / "k8s")
    deployment = find_resource(resources, "Deployment", "ws-counter-worker")
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0
    # The whole new generation first: a client moves once, never onto a pod drained next.
    assert rolling["maxSurge"] == "100%"
    # The HorizontalPodAutoscaler owns the count.
    assert "replicas" not in deployment["spec"]
    # (What it scales on: tests/test_deploy_static.py.)
    find_resource(resources, "HorizontalPodAutoscaler", "ws-counter-worker")


def test_probes_point_at_the_workers_port_and_endpoints() -> None:
    _, container, config = worker_pod()
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["http"] == int(config["WS_PORT"])
    paths = {name: container[name]["httpGet"] for name in PROBES}
    assert {probe["port"] for probe in paths.values()} == {"http"}
    # Liveness must not depend on Redis, readiness must.
    assert paths["livenessProbe"]["path"] == "/healthz"
    assert paths["readinessProbe"]["path"] == "/readyz"


POD_SECRET = "k8s-test-secret-of-sufficient-length-0123"


def test_worker_answers_its_probes_and_drains_within_the_grace_period(
    redis_server: RedisServer, counter_name: str
) -> None:
    pod, container, config = worker_pod()
    pause = float(container["lifecycle"]["preStop"]["exec"]["command"][1])
    # The test's own plain Redis stands in for the cluster's TLS one (whose access the
    # ConfigMap names by files in the pod; tests/test_redis_security.py covers it).
    access = ("REDIS_URL", "REDIS_TLS", "REDIS_USERNAME", "REDIS_PASSWORD")
    env = {
        k: v
        for k, v in config.items()
        if k not in {"WS_HOST", "WS_PORT"} and not k.startswith(access)
    }
    # Tokens are required (WS_AUTH=tokens): the Secret ws-counter-auth gives the pod this.
    assert env["WS_AUTH"] == "tokens"
    secret_refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]
                   if "secretKeyRef" in e.get("valueFrom", {})}  # fmt: skip
    assert "optional" not in secret_refs["WS_JWT_SECRET"], "the workers must not start without it"
    env["WS_JWT_SECRET"] = POD_SECRET
    worker = WorkerProcess(redis_server.url, env).start()
    try:
        for name in PROBES:
            path = container[name]["httpGet"]["path"]
            assert http_get(worker.http + path)[0] == 200, f"{name} {path}"
        elapsed = asyncio.run(_terminate_like_the_kubelet(worker, counter_name))
    finally:
        worker.stop()
    budget = pod["terminationGracePeriodSeconds"] - pause
    assert elapsed < budget, f"drain took {elapsed:.1f}s of a {budget:.0f}s budget"


async def _terminate_like_the_kubelet(worker: WorkerProcess, counter_name: str) -> float:
    """SIGTERM (after the preStop hook): readyz 503, clients get 1012, exit 0. Returns seconds."""
    assert worker.child is not None
    token = issue(POD_SECRET, [counter_name], [counter_name])
    async with connect(f"{worker.url}counters/{counter_name}?token={token}") as client:
        await client.recv()
        await client.send("1")
        started = time.monotonic()
        mark = worker.child.mark()
        worker.child.send_signal(signal.SIGTERM)
        await asyncio.to_thread(worker.wait_for_event, "draining", 10, mark)
        # With no drain delay the listener may already be closed: either way,
        # the readiness probe fails from now on.
        assert not answers_200(worker.http + "/readyz")
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(seconds(30)):
                while True:
                    await client.recv()
        assert client.close_code == 1012
        assert await asyncio.to_thread(worker.child.wait, seconds(30)) == 0
        return time.monotonic() - started
