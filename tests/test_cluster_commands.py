"""The Redis Cluster's shell commands, run as written on real TLS nodes made by
``ws-counter make-secrets``: the Job and the compose service that form the cluster
(and leave a formed one alone), and the preStop hook that hands a primary's slots to
its replica before the pod stops."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import yaml

from ws_counter.tools.processes import Child, free_ports

from .deploy import REDIS_CLUSTER_COMPOSE_FILE, ROOT, find_resource, render_kustomization
from .podshell import PodShell
from .secured import Admin, start_secured_redis, until

pytestmark = [pytest.mark.redis_cluster]

BUS_OFFSET = 10000


@pytest.fixture
def nodes(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[PodShell, list[int]]]:
    """As many nodes as the test's deployment has: the k8s component's nine, or compose's six."""
    shell = PodShell(tmp_path)
    ports = free_ports(getattr(request, "param", 9), offsets=(0, BUS_OFFSET))
    children: list[Child] = []
    try:
        names = list(kubernetes_hosts(ports))
        for index, port in enumerate(ports):
            # As the StatefulSet runs them: each announcing its DNS name to clients.
            node = ("--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
                    "--cluster-announce-hostname", names[index],
                    "--cluster-preferred-endpoint-type", "hostname",
                    "--cluster-config-file", str(tmp_path / f"nodes-{port}.conf"))  # fmt: skip
            children.append(start_secured_redis(shell.secrets, port, tmp_path / str(port), *node))
        yield shell, ports
    finally:
        for child in children:
            child.stop()


def kubernetes_hosts(ports: list[int]) -> dict[str, int]:
    """The nodes' short names (resolved in the pods' namespace), as they announce them."""
    return {f"redis-cluster-{i}.redis-cluster": port for i, port in enumerate(ports)}


def test_the_init_job_forms_the_cluster_once(nodes: tuple[PodShell, list[int]]) -> None:
    shell, ports = nodes
    job = find_resource(render_kustomization(ROOT / "k8s" / "overlays" / "redis-cluster"),
                        "Job", "redis-cluster-init")  # fmt: skip
    (container,) = job["spec"]["template"]["spec"]["containers"]
    formed = shell.run(container["command"], hosts=kubernetes_hosts(ports), timeout=120)
    assert formed.returncode == 0, formed.stdout + formed.stderr
    assert_formed(Admin(shell.secrets, ports[0]), len(ports))
    again = shell.run(container["command"], hosts=kubernetes_hosts(ports), timeout=60)
    assert (again.returncode, again.stdout.strip()) == (0, "cluster already formed")


@pytest.mark.parametrize("nodes", [6], indirect=True)
def test_the_compose_init_service_forms_the_cluster_once(nodes: tuple[PodShell, list[int]]) -> None:
    shell, ports = nodes
    service = yaml.safe_load(REDIS_CLUSTER_COMPOSE_FILE.read_text())["services"]
    init = service["redis-cluster-init"]
    # Compose reads $$ as a literal $.
    argv = [*init["entrypoint"], *(part.replace("$$", "$") for part in init["command"])]
    hosts = {f"redis-{i + 1}": port for i, port in enumerate(ports)}
    formed = shell.run(argv, hosts=hosts, timeout=120)
    assert formed.returncode == 0, formed.stdout + formed.stderr
    assert_formed(Admin(shell.secrets, ports[0]), len(ports))
    again = shell.run(argv, hosts=hosts, timeout=60)
    assert (again.returncode, again.stdout.strip()) == (0, "cluster already formed")


def test_prestop_hands_a_primarys_slots_to_its_replica(nodes: tuple[PodShell, list[int]]) -> None:
    shell, ports = nodes
    resources = render_kustomization(ROOT / "k8s" / "overlays" / "redis-cluster")
    job = find_resource(resources, "Job", "redis-cluster-init")
    create = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert shell.run(create, hosts=kubernetes_hosts(ports), timeout=120).returncode == 0
    statefulset = find_resource(resources, "StatefulSet", "redis-cluster")
    pre_stop = statefulset["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]
    command = pre_stop["exec"]["command"]
    assert_formed(Admin(shell.secrets, ports[0]), len(ports))
    roles = {port: role(Admin(shell.secrets, port)) for port in ports}
    primary = next(port for port, r in roles.items() if r == "master")
    replica = next(port for port, r in roles.items() if r == "slave")
    # As in a cluster that has run a while: every replica in sync with its primary.
    for port in (p for p, r in roles.items() if r == "slave"):
        until(partial(in_sync, Admin(shell.secrets, port)))
    # A replica stops as it is: nothing to hand over.
    assert (
        shell.run(command, port=replica, hosts=kubernetes_hosts(ports), timeout=30).returncode == 0
    )
    assert role(Admin(shell.secrets, replica)) == "slave"
    # A primary leaves as a replica, its former replica now serving its slots.
    handed = shell.run(command, port=primary, hosts=kubernetes_hosts(ports), timeout=30)
    assert handed.returncode == 0, handed.stdout + handed.stderr
    assert role(Admin(shell.secrets, primary)) == "slave", handed.stdout + handed.stderr
    assert_formed(Admin(shell.secrets, primary), len(ports))


def test_the_init_container_finds_every_node_after_a_full_restart(tmp_path: Path) -> None:
    """Every node restarted on a new address, as after a node pool's replacement: without
    the repair the nodes do not find each other; with the StatefulSet's init container
    (nodes.conf's addresses replaced by what the announced names resolve to now) they
    form the cluster again. Loopback's 127.0.1.x and 127.0.2.x stand in for the old and
    new pod IPs, and a getent of the test's own for the cluster DNS."""
    shell = PodShell(tmp_path)
    ports = free_ports(9, offsets=(0, BUS_OFFSET))
    names = list(kubernetes_hosts(ports))
    statefulset = find_resource(render_kustomization(ROOT / "k8s" / "overlays" / "redis-cluster"),
                                "StatefulSet", "redis-cluster")  # fmt: skip
    (repair,) = statefulset["spec"]["template"]["spec"]["initContainers"]
    children: list[Child] = []

    def start_all(network: str) -> None:
        for i, port in enumerate(ports):
            # Its own address for what it sends too, as a pod has one address.
            node = ("--bind", f"{network}.{i + 1}", "--bind-source-addr", f"{network}.{i + 1}",
                    "--cluster-enabled", "yes", "--cluster-announce-hostname", names[i],
                    "--cluster-node-timeout", "2000",
                    "--cluster-config-file", str(tmp_path / str(i) / "nodes.conf"))  # fmt: skip
            children.append(start_secured_redis(shell.secrets, port, tmp_path / str(i), *node))

    def stop_all() -> None:
        while children:
            children.pop().stop()

    def state(network: str) -> str:
        return Admin(shell.secrets, ports[0], f"{network}.1")("cluster", "info")

    try:
        start_all("127.0.1")
        first = Admin(shell.secrets, ports[0], "127.0.1.1")
        first("--cluster", "create", *(f"127.0.1.{i + 1}:{p}" for i, p in enumerate(ports)),
              "--cluster-replicas", "2", "--cluster-yes")  # fmt: skip
        # Every node knows every other's name (gossip) before the restart.
        until(lambda: all(name in first("cluster", "nodes") for name in names[1:]))
        until(lambda: "cluster_state:ok" in state("127.0.1"))
        stop_all()
        start_all("127.0.2")
        time.sleep(3 * 2)  # three node timeouts: long enough to find each other, if they can
        assert "cluster_state:ok" not in state("127.0.2")
        stop_all()
        addresses = {name: f"127.0.2.{i + 1}" for i, name in enumerate(names)}
        for i in range(9):
            repaired = shell.run(repair["command"], paths={"/data/": tmp_path / str(i)},
                                 addresses=addresses)  # fmt: skip
            assert repaired.returncode == 0, repaired.stderr
        start_all("127.0.2")
        until(lambda: "cluster_state:ok" in state("127.0.2"))
        assert "127.0.1." not in Admin(shell.secrets, ports[0], "127.0.2.1")("cluster", "nodes")
    finally:
        stop_all()


def role(admin: Admin) -> str:
    for line in admin("info", "replication").splitlines():
        if line.startswith("role:"):
            return line.removeprefix("role:").strip()
    raise AssertionError("no role in INFO replication")


def in_sync(replica: Admin) -> bool:
    return "master_link_status:up" in replica("info", "replication")


def assert_formed(admin: Admin, count: int) -> None:
    """``count`` nodes, three of them primaries, every slot served, every link up (asked
    until the gossip settles: Redis announces the cluster's state to no client)."""
    deadline = time.monotonic() + 30
    while True:
        info = admin("cluster", "info")
        nodes = admin("cluster", "nodes").splitlines()
        masters = sum("master" in line.split()[2] for line in nodes)
        linked = sum(line.split()[7] == "connected" for line in nodes)
        settled = "cluster_state:ok" in info and "cluster_slots_ok:16384" in info
        if settled and (masters, len(nodes), linked) == (3, count, count):
            return
        assert time.monotonic() < deadline, info + "\n".join(nodes)
        time.sleep(0.2)
