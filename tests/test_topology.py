"""docker-compose.yml's topology started as plain processes on loopback.

Everything is read from the compose file: the Redis flags, the number of
workers and their environment, and the HAProxy config it mounts; the secrets
service's files are made the same way (``make_secrets``). Only what needs
Docker's network and volumes is adapted: listening addresses, file paths, and
the DNS-based server-template becomes one server line per worker. So the compose file
cannot drift from what is tested.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ws_counter.tools.cluster import ClusterOptions, LocalCluster
from ws_counter.tools.makesecrets import make_secrets
from ws_counter.tools.processes import free_port
from ws_counter.tools.redissecurity import config_as_flags

from .conftest import http_call
from .deploy import ROOT, compose
from .loadrun import BackgroundLoadtest

pytestmark = pytest.mark.cluster

# Set by `ws-counter cluster` for each process: address, port, Redis address.
NETWORK_SETTINGS = {"WS_HOST", "WS_PORT", "REDIS_URL"}
# Where the compose services mount the secrets volume.
MOUNTED = "/secrets"


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


def redis_options_for_loopback(command: list[str], secrets: Path, port: int) -> tuple[str, ...]:
    """The compose Redis' options with its redis.conf (from the secrets service) spelled as
    flags, its files here, listening for TLS on ``port``."""
    config_file, *options = command[1:]
    assert config_file == f"{MOUNTED}/redis.conf", "the compose Redis changed shape"
    return (*config_as_flags((secrets / "redis.conf").read_text(), port), *options)


def test_compose_topology_as_processes_counts_exactly_through_a_worker_kill(
    tmp_path: Path,
) -> None:
    services = compose()["services"]
    redis_command = services["redis"]["command"]
    worker = services["worker"]
    replicas = worker["deploy"]["replicas"]
    # What the one-shot secrets service makes into its volume, made here instead.
    secrets = tmp_path / "secrets"
    make_secrets(secrets, mounted_at=str(secrets))
    environment = {
        k: str(v).replace(MOUNTED, str(secrets)) for k, v in worker["environment"].items()
    }
    config = adapt_for_loopback(mounted_haproxy_config(services["lb"]).read_text(), replicas)
    redis_port = free_port()
    options = ClusterOptions(
        workers=replicas,
        port=free_port(),
        haproxy=True,
        haproxy_config=config,
        redis_options=redis_options_for_loopback(redis_command, secrets, redis_port),
        worker_env={k: v for k, v in environment.items() if k not in NETWORK_SETTINGS},
        log_dir=tmp_path / "logs",
    )
    cluster = LocalCluster(options)
    cluster.redis_port = redis_port  # the port redis.conf's tls-port names
    with cluster:
        front = f"http://127.0.0.1:{cluster.options.port}"
        for private in ("/metrics", "/readyz"):
            status, headers, body = http_call(front, "GET", private)
            assert status == 404 and headers["content-type"] == "application/json", private
            assert body["code"] == "not_found"
        assert http_call(front, "GET", "/counters/default")[0] == 200
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
