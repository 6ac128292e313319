"""A Redis Cluster of real redis-server processes on loopback, formed by redis-cli.

``ws-counter cluster --redis-cluster N`` and the cluster tests use it: N
primaries and N replicas (``redis-cli --cluster create ... --cluster-replicas
1``), each with the persistence and memory bound of the single Redis.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Callable, Collection
from pathlib import Path

from .processes import Child, ChildFailed, free_ports
from .redissecurity import RedisSecurity
from .redisserver import (
    READY_TIMEOUT,
    REDIS_OPTIONS,
    REDIS_REPLICA_GUARD,
    ClusterError,
    require_binary,
    start_redis_server,
)

# Failover starts after a primary has been unreachable this long (ms).
NODE_TIMEOUT_MS = 2000
CLUSTER_OPTIONS = (
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    "--cluster-node-timeout",
    str(NODE_TIMEOUT_MS),
    # While one shard fails over the others keep serving their own slots;
    # Redis' default would refuse every command on every shard (CLUSTERDOWN).
    "--cluster-require-full-coverage",
    "no",
    *REDIS_REPLICA_GUARD,
)


class RedisClusterProcesses:
    """``primaries`` primaries with one replica each, started, formed, and stopped by pid."""

    def __init__(
        self,
        primaries: int,
        directory: Path,
        options: tuple[str, ...] = REDIS_OPTIONS,
        *,
        log_dir: Path | None = None,
        echo: Callable[[str, str], None] | None = None,
        security: RedisSecurity | None = None,
    ) -> None:
        if primaries < 3:
            raise ClusterError("a Redis Cluster needs at least 3 primaries")
        self.primaries = primaries
        self.directory = directory
        self.options = options
        self.log_dir = log_dir
        self.echo = echo
        self.security = security
        self.ports = free_cluster_ports(primaries * 2)
        self.nodes: dict[int, Child] = {}

    @property
    def seeds(self) -> str:
        """The nodes as REDIS_CLUSTER_NODES takes them: host:port,host:port,..."""
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self) -> RedisClusterProcesses:
        try:
            for index in range(len(self.ports)):
                self.start_node_on_a_free_port(index)
            self.cli(
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
                port=None,
                timeout=120,
            )
            self.wait_for_replicas()
        except BaseException:
            self.stop()
            raise
        return self

    def start_node_on_a_free_port(self, index: int, attempts: int = 5) -> Child:
        """Start node ``index``; if another process took its port since it was picked,
        pick another (before the cluster is formed no one knows the node's address)."""
        for _ in range(attempts - 1):
            try:
                return self.start_node(self.ports[index])
            except ChildFailed as failure:
                if "Address already in use" not in str(failure):
                    raise
            taken = {*self.ports, *(port + BUS_OFFSET for port in self.ports)}
            self.ports[index] = free_cluster_ports(1, taken)[0]
        return self.start_node(self.ports[index])

    def wait_for_replicas(self, timeout_ms: int = 60_000) -> None:
        """Block until every primary's replica has caught up (WAIT on each primary).

        A cluster just formed still syncs its replicas; until then an increment
        that asks for a replica's acknowledgement cannot get one.
        """
        for port in self.primary_ports():
            confirmed = self.cli(
                "WAIT", "1", str(timeout_ms), port=port, timeout=timeout_ms / 1000 + 10
            )
            if int(confirmed.strip() or 0) < 1:
                raise ClusterError(f"the replica of 127.0.0.1:{port} did not catch up")

    def start_node(self, port: int) -> Child:
        """Start (or restart, on its own files) the node on ``port``."""
        log_path = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"redis-{port}.log"
        child = start_redis_server(
            port,
            self.directory / str(port),
            self.options,
            name=f"redis-{port}",
            extra=(*CLUSTER_OPTIONS, *(self.security.server_args(port) if self.security else ())),
            log_path=log_path,
            echo=self.echo,
            timeout=READY_TIMEOUT,
        )
        self.nodes[port] = child
        return child

    def cli(self, *args: str, port: int | None, timeout: float = 30) -> str:
        """redis-cli against one node (``port``), or a --cluster command naming its own."""
        binary = require_binary("redis-cli", "redis-tools")
        target = [] if port is None else ["-p", str(port)]
        access = self.security.cli_args() if self.security else ()
        result = subprocess.run(
            [binary, *access, *target, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise ClusterError(f"redis-cli {' '.join(args)}: {result.stdout}{result.stderr}")
        return result.stdout

    def primary_ports(self) -> dict[int, list[tuple[int, int]]]:
        """Each live primary's port and the slot ranges it serves, from CLUSTER NODES."""
        alive = next(port for port, child in self.nodes.items() if child.running)
        return parse_primaries(self.cli("CLUSTER", "NODES", port=alive))

    def kill(self, port: int) -> None:
        self.nodes[port].stop(signum=signal.SIGKILL)

    def stop(self) -> None:
        for child in self.nodes.values():
            child.send_signal(signal.SIGTERM)
        for child in self.nodes.values():
            child.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisClusterProcesses:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# A cluster node also listens on its port + 10000 (the cluster bus).
BUS_OFFSET = 10000


def free_cluster_ports(count: int, taken: Collection[int] = ()) -> list[int]:
    """``count`` node ports, each free now with its bus port, all distinct."""
    return free_ports(count, taken, offsets=(0, BUS_OFFSET))


def parse_primaries(cluster_nodes: str) -> dict[int, list[tuple[int, int]]]:
    """CLUSTER NODES output as {port: [(first slot, last slot), ...]} for live primaries
    that serve slots.

    A line reads ``id host:port@bus flags primary ping pong epoch link slot...``;
    slots are ``N`` or ``N-M``, and ``[N->-id]``/``[N-<-id]`` mark a migration.
    """
    owners: dict[int, list[tuple[int, int]]] = {}
    for line in cluster_nodes.splitlines():
        fields = line.split()
        if len(fields) < 8 or "master" not in fields[2] or "fail" in fields[2]:
            continue
        port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
        ranges = []
        for slot in fields[8:]:
            if slot.startswith("["):
                continue
            first, _, last = slot.partition("-")
            ranges.append((int(first), int(last or first)))
        # Right after forming, the future replicas still say master, without slots.
        if ranges:
            owners[port] = ranges
    return owners
