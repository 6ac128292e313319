"""Every probe and healthcheck we ship, run as written, in each state it must judge.

The commands are read from the rendered Kubernetes manifests and the compose
files, never retyped, and run with ``sh`` against real redis-servers made by
``ws-counter make-secrets`` (TLS only, ACL file): ready, still LOADING its
data, not there, a Redis Cluster whose state is fail, a replica with its link
up and with it broken. Only two things are mapped: ``/secrets`` to this
test's directory, and the port, which a ``redis-cli`` of this test's own on
PATH adds (in a pod or container Redis is on localhost:6379).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ws_counter.tools.processes import Child, free_port, free_ports
from ws_counter.tools.redissecurity import config_as_flags
from ws_counter.tools.redisserver import require_binary, start_redis_server

from .conftest import WorkerProcess, seconds
from .deploy import (
    COMPOSE_FILE,
    KUSTOMIZATIONS,
    REDIS_CLUSTER_COMPOSE_FILE,
    ROOT,
    render_kustomization,
)
from .podshell import PodShell
from .secured import Admin, until

PROBE_KINDS = ("startupProbe", "readinessProbe", "livenessProbe")
BUS_OFFSET = 10000


@dataclass(frozen=True)
class Probe:
    where: str
    argv: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.argv)

    @property
    def judges_a_cluster(self) -> bool:
        return "cluster info" in self.text


def kubernetes_probes() -> list[Probe]:
    found = []
    for directory in KUSTOMIZATIONS:
        for resource in render_kustomization(directory):
            pod = resource.get("spec", {}).get("template", {}).get("spec", {})
            for container in pod.get("containers", []):
                for kind in PROBE_KINDS:
                    command = container.get(kind, {}).get("exec", {}).get("command")
                    if command:
                        where = f"{directory.relative_to(ROOT)} {resource['metadata']['name']}"
                        found.append(Probe(f"{where} {kind}", tuple(command)))
    return found


def compose_healthchecks() -> list[Probe]:
    found = []
    for path in (COMPOSE_FILE, REDIS_CLUSTER_COMPOSE_FILE):
        document: dict[str, Any] = yaml.safe_load(path.read_text())
        services = {**document.get("services", {})}
        services.update({k: v for k, v in document.items() if k.startswith("x-")})
        for name, service in services.items():
            test = (service or {}).get("healthcheck", {}).get("test")
            if test is not None:
                where = f"{path.relative_to(ROOT)} {name} healthcheck"
                found.append(Probe(where, _compose_argv(test)))
    return found


def _compose_argv(test: str | list[str]) -> tuple[str, ...]:
    """The argv a compose healthcheck runs: CMD as given, CMD-SHELL and a string by sh."""
    if isinstance(test, str):
        return ("sh", "-c", test)
    if test[0] == "CMD-SHELL":
        return ("sh", "-c", test[1])
    assert test[0] == "CMD", test
    return tuple(test[1:])


def distinct(probes: list[Probe]) -> list[Probe]:
    seen: dict[tuple[str, ...], Probe] = {}
    for probe in probes:
        seen.setdefault(probe.argv, probe)
    return list(seen.values())


SHIPPED = kubernetes_probes() + compose_healthchecks()
REDIS_PROBES = distinct([p for p in SHIPPED if "redis-cli" in p.text])
WORKER_PROBES = distinct([p for p in SHIPPED if "ws-counter healthcheck" in p.text])


def test_every_shipped_probe_is_found_and_parses() -> None:
    wheres = " | ".join(p.where for p in SHIPPED)
    for expected in ("k8s redis readinessProbe", "redis-cluster readinessProbe",
                     "docker-compose.yml redis healthcheck",
                     "compose.redis-cluster.yml x-redis-node healthcheck",
                     "docker-compose.yml worker healthcheck"):  # fmt: skip
        assert expected in wheres, wheres
    assert len(REDIS_PROBES) >= 2 and WORKER_PROBES
    for probe in SHIPPED:
        if probe.argv[0] == "sh":
            parsed = subprocess.run(["sh", "-n", "-c", probe.argv[-1]], capture_output=True,
                                    text=True, timeout=seconds(10), check=False)  # fmt: skip
            assert parsed.returncode == 0, f"{probe.where}: {parsed.stderr}"


class Runner(PodShell):
    """Runs a probe as a pod would, against a Redis on ``port``."""

    def passes(self, probe: Probe, port: int) -> bool:
        return self.run(probe.argv, port).returncode == 0

    def options(self, port: int) -> tuple[str, ...]:
        return config_as_flags((self.secrets / "redis.conf").read_text(), port)

    def admin(self, port: int, *args: str) -> str:
        return Admin(self.secrets, port)(*args)


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    return Runner(tmp_path_factory.mktemp("probes"))


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.stop()


def judged(runner: Runner, probes: list[Probe], port: int) -> dict[str, bool]:
    return {probe.where: runner.passes(probe, port) for probe in probes}


def test_redis_probes_pass_a_ready_redis_and_fail_one_that_is_gone(
    runner: Runner, tmp_path: Path, children: list[Child]
) -> None:
    port = free_port()
    children.append(start_redis_server(port, tmp_path / "data", extra=runner.options(port)))
    single = [p for p in REDIS_PROBES if not p.judges_a_cluster]
    assert all(judged(runner, single, port).values()), judged(runner, single, port)
    children.pop().stop()
    assert not any(judged(runner, REDIS_PROBES, port).values())


def test_no_redis_probe_passes_a_redis_still_loading_its_data(
    runner: Runner, tmp_path: Path, children: list[Child]
) -> None:
    """A restarted Redis answers LOADING until its data is read: it must not be ready."""
    port, data = free_port(), tmp_path / "data"
    plain = ("--appendonly", "no", "--save", "")
    child = start_redis_server(port, data, plain, extra=(*runner.options(port),
                               "--enable-debug-command", "yes"))  # fmt: skip
    runner.admin(port, "debug", "populate", "200000")
    runner.admin(port, "save")
    child.stop()
    # Slow the load down (the keys are read one by one, 100 µs each) and answer
    # while loading, as a large AOF would keep Redis loading for minutes.
    slow = ("--key-load-delay", "100", "--loading-process-events-interval-bytes", "1024")
    argv = [require_binary("redis-server", "redis-server"), "--bind", "127.0.0.1",
            "--dir", str(data), *plain, *runner.options(port), *slow]  # fmt: skip
    children.append(Child("loading-redis", argv).start())
    children[-1].wait_for_line(lambda line: "Loading RDB" in line, seconds(10))
    verdicts = judged(runner, REDIS_PROBES, port)
    still_loading = "loading:1" in runner.admin(port, "info", "persistence")
    assert still_loading, "the load ended before every probe ran: raise the key count"
    assert not any(verdicts.values()), verdicts


def test_cluster_probes_judge_the_cluster_state_and_the_replication_link(
    runner: Runner, tmp_path: Path, children: list[Child]
) -> None:
    cluster_probes = [p for p in REDIS_PROBES if p.judges_a_cluster]
    assert cluster_probes
    primary, replica = free_ports(2, offsets=(0, BUS_OFFSET))
    for port in (primary, replica):
        node = ("--cluster-enabled", "yes", "--cluster-port", str(_bus(port)),
                "--cluster-config-file", str(tmp_path / f"nodes-{port}.conf"),
                "--cluster-node-timeout", "2000")  # fmt: skip
        extra = (*runner.options(port), *node)
        children.append(start_redis_server(port, tmp_path / f"data-{port}", extra=extra))
    # No slots yet: cluster_state:fail.
    assert not any(judged(runner, cluster_probes, primary).values())
    runner.admin(primary, "cluster", "addslotsrange", "0", "16383")
    until(lambda: "cluster_state:ok" in runner.admin(primary, "cluster", "info"))
    assert all(judged(runner, cluster_probes, primary).values())
    # A replica: ready once its link to the primary is up.
    runner.admin(replica, "cluster", "meet", "127.0.0.1", str(primary), str(_bus(primary)))
    primary_id = runner.admin(primary, "cluster", "myid").strip()
    until(lambda: primary_id in runner.admin(replica, "cluster", "nodes"))
    runner.admin(replica, "cluster", "replicate", primary_id)
    until(lambda: "master_link_status:up" in runner.admin(replica, "info", "replication"))
    assert all(judged(runner, cluster_probes, replica).values())
    # Its primary gone: the link is down, and the replica must not be ready.
    children[0].stop()
    until(lambda: "master_link_status:down" in runner.admin(replica, "info", "replication"))
    assert not any(judged(runner, cluster_probes, replica).values())


def test_the_worker_healthcheck_passes_a_live_worker_and_fails_a_gone_one(
    runner: Runner, tmp_path: Path, children: list[Child]
) -> None:
    port = free_port()
    children.append(start_redis_server(port, tmp_path / "data"))
    worker = WorkerProcess(f"redis://127.0.0.1:{port}/0").start()
    try:
        os.environ["WS_PORT"] = str(worker.port)
        assert all(runner.passes(probe, port) for probe in WORKER_PROBES)
    finally:
        worker.stop()
    assert not any(runner.passes(probe, port) for probe in WORKER_PROBES)
    del os.environ["WS_PORT"]


def _bus(port: int) -> int:
    return port + BUS_OFFSET
