"""A rolling update for real: a generation of workers behind HAProxy replaced by the next,
under load, with the timings the Kubernetes manifests ship.

As the Deployment does (maxSurge 100%, maxUnavailable 0): the whole new
generation starts and turns ready, then every old worker gets SIGTERM. The
preStop pause becomes the drain delay (HAProxy sees /readyz at 503 instead of
the endpoints going away), then the ConfigMap's spread and timeout apply.
Measured: disconnects per client, the reconnect peak against the steady
connect rate of the start, and that no increment was lost or doubled.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from ws_counter.tools.cluster import (
    HAPROXY_CONFIG,
    is_haproxy_ready,
    is_worker_ready,
    worker_argv,
    worker_env,
)
from ws_counter.tools.processes import Child, free_port
from ws_counter.tools.redisserver import require_binary

from .conftest import RedisServer, seconds
from .deploy import ROOT, find_resource, render_kustomization
from .loadrun import BackgroundLoadtest

pytestmark = pytest.mark.cluster

GENERATION = 4
CLIENTS = 200
# The steady connect rate: clients arrive at this pace at the start.
RAMP = 20


def shipped_drain() -> dict[str, str]:
    """The drain settings of k8s/, with the preStop pause as the drain delay."""
    resources = render_kustomization(ROOT / "k8s")
    deployment = find_resource(resources, "Deployment", "ws-counter-worker")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    pause = container["lifecycle"]["preStop"]["exec"]["command"][1]
    config_name = container["envFrom"][0]["configMapRef"]["name"]
    config = find_resource(resources, "ConfigMap", config_name)["data"]
    return {
        "WS_DRAIN_DELAY": pause,
        "WS_DRAIN_SPREAD": config["WS_DRAIN_SPREAD"],
        "WS_DRAIN_TIMEOUT": config["WS_DRAIN_TIMEOUT"],
    }


def start_worker(port: int, redis_url: str, drain: dict[str, str], log_dir: Path) -> Child:
    env = worker_env(port, redis_url, **drain)
    child = Child(f"worker-{port}", worker_argv(), env=env, log_path=log_dir / f"{port}.log")
    child.start()
    child.wait_for_line(is_worker_ready, seconds(30))
    return child


def wait_for_servers(haproxy: Child, names: list[str], state: str, after: int = 0) -> None:
    """Block until HAProxy's log says each of ``names`` is ``state`` (UP or DOWN)."""
    pending = set(names)
    while pending:
        line = haproxy.wait_for_line(
            lambda text: any(f"workers/{n} " in text and f"is {state}" in text for n in pending),
            seconds(30),
            after,
        )
        match = re.search(r"workers/(w\d+) ", line)
        assert match is not None
        pending.discard(match.group(1))


def test_a_rollout_moves_each_client_once_without_a_storm_or_a_lost_increment(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    drain = shipped_drain()
    old_ports = [free_port() for _ in range(GENERATION)]
    new_ports = [free_port() for _ in range(GENERATION)]
    slots = [f"w{n}" for n in range(1, 2 * GENERATION + 1)]
    old = [start_worker(port, redis_server.url, drain, tmp_path) for port in old_ports]
    new: list[Child] = []
    lb_port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(HAPROXY_CONFIG.read_text())
    haproxy = Child(
        "haproxy",
        [require_binary("haproxy", "haproxy"), "-W", "-db", "-f", str(config)],
        env={
            **os.environ,
            "LB_BIND": f"127.0.0.1:{lb_port}",
            **{f"WS_WORKER_{n + 1}": f"127.0.0.1:{p}" for n, p in enumerate(old_ports + new_ports)},
        },
        log_path=tmp_path / "haproxy.log",
    ).start()
    try:
        haproxy.wait_for_line(is_haproxy_ready, seconds(30))
        # The next generation's slots hold nothing yet.
        wait_for_servers(haproxy, slots[GENERATION:], "DOWN")
        run = BackgroundLoadtest(
            f"ws://127.0.0.1:{lb_port}/",
            *("--clients", str(CLIENTS), "--ramp", str(RAMP), "--counter", "rollout"),
            *("--rate", "200", "--duration", "45"),
            json_path=tmp_path / "report.json",
        )
        run.wait_until_acking()
        mark = haproxy.mark()
        new = [start_worker(port, redis_server.url, drain, tmp_path) for port in new_ports]
        wait_for_servers(haproxy, slots[GENERATION:], "UP", mark)
        for child in old:
            child.send_signal(signal.SIGTERM)
        for child in old:
            assert child.wait(seconds(60)) == 0
        status, report = run.finish()
    finally:
        for child in [*old, *new, haproxy]:
            child.stop()
    assert status == 0 and report is not None, run.output
    assert report["correct"] is True
    assert report["increments_acked"] == report["increments_sent"]
    per_client = report["reconnects"] / CLIENTS
    peak, steady = report["reconnects_per_s_peak"], report["connects_per_s_peak"]
    print(f"\nrollout: {per_client:.2f} disconnects per client; reconnect peak {peak}/s"
          f" against a steady connect rate of {steady}/s ({peak / steady:.2f}x)")  # fmt: skip
    assert 0.9 <= per_client <= 1.1
    assert peak <= 1.5 * steady
