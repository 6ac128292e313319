"""docker-compose.yml's topology started as plain processes on loopback.

Everything is read from the compose file: the Redis flags, the number of
workers and their environment, and the HAProxy config it mounts. Only what
needs Docker's network is adapted: listening addresses, and the DNS-based
server-template becomes one server line per worker. So the compose file
cannot drift from what is tested.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tools.cluster import ClusterOptions, LocalCluster
from tools.processes import free_port

from .deploy import ROOT, compose
from .loadrun import BackgroundLoadtest

pytestmark = pytest.mark.cluster

# Set by `ws-counter cluster` for each process: address, port, Redis address.
NETWORK_SETTINGS = {"WS_HOST", "WS_PORT", "REDIS_URL"}


def mounted_haproxy_config(lb: dict[str, Any]) -> Path:
    for volume in lb["volumes"]:
        source, target = volume.split(":")[:2]
        if target == "/usr/local/etc/haproxy/haproxy.cfg":
            return (ROOT / str(source)).resolve()
    raise AssertionError("the lb service mounts no haproxy.cfg")


def adapt_for_loopback(config: str, workers: int) -> str:
    """Replace the container-network parts of the compose HAProxy config, and only those."""
    config, binds = re.subn(r"(?m)^(\s*)bind :8080$", r'\1bind "${LB_BIND}"', config)
    servers = "\n".join(f'    server w{n} "${{WS_WORKER_{n}}}"' for n in range(1, workers + 1))
    config, templates = re.subn(r"(?m)^\s*server-template .*$", servers, config)
    assert (binds, templates) == (1, 1), "compose.cfg changed shape: update this adapter"
    return config


def test_compose_topology_as_processes_counts_exactly_through_a_worker_kill(
    tmp_path: Path,
) -> None:
    services = compose()["services"]
    redis_command = services["redis"]["command"]
    worker = services["worker"]
    replicas = worker["deploy"]["replicas"]
    environment = {k: str(v) for k, v in worker["environment"].items()}
    config = adapt_for_loopback(mounted_haproxy_config(services["lb"]).read_text(), replicas)
    options = ClusterOptions(
        workers=replicas,
        port=free_port(),
        haproxy=True,
        haproxy_config=config,
        redis_options=tuple(redis_command[1:]),
        worker_env={k: v for k, v in environment.items() if k not in NETWORK_SETTINGS},
        log_dir=tmp_path / "logs",
    )
    with LocalCluster(options) as cluster:
        run = BackgroundLoadtest(
            cluster.url,
            *("--clients", "150", "--rate", "300", "--duration", "5"),
            json_path=tmp_path / "report.json",
        )
        run.wait_until_acking()
        cluster.workers[1].kill()
        status, report = run.finish()
    assert status == 0, run.output
    assert report is not None
    assert report["correct"] is True
    assert report["reconnects"] > 0, "the killed worker had clients that reconnected"
    # Nothing the load generator sent was lost: every increment was acknowledged.
    assert report["increments_acked"] == report["increments_sent"]
    assert report["observed_total"] == report["expected_total"]
