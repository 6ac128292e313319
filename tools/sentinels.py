"""A Sentinel-managed Redis on loopback: master, replica and three Sentinels, as real processes.

The tests, the soak (``python -m faults soak``) and ``LocalCluster`` with
``sentinel=True`` use it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .processes import Child, free_port
from .redissecurity import RedisSecurity
from .redisserver import require_binary, start_redis_server

# Seconds for the nodes to start and the Sentinels to find each other.
START_TIMEOUT = 30.0

MASTER_NAME = "mymaster"


class SentinelSet:
    """With ``security``, every node and Sentinel takes TLS only and a password
    (tools/redissecurity.py), and the workers log in as the least-privilege user."""

    def __init__(self, directory: Path, security: RedisSecurity | None = None) -> None:
        self.directory = directory
        self.security = security
        # A master and one replica. Workers wait for that one replica to confirm
        # each increment (REDIS_REPLICA_ACKS=1): with more replicas than confirm,
        # a failover may promote one that lacks acknowledged increments.
        self.ports = {"a": free_port(), "b": free_port()}
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.children: list[Child] = []
        self.sentinels: list[Child] = []

    @property
    def addresses(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def worker_env(self) -> dict[str, str]:
        """How a worker reaches this set: the Sentinels, and its credentials and TLS."""
        env = {"REDIS_SENTINELS": self.addresses, "REDIS_MASTER_NAME": MASTER_NAME}
        if self.security is not None:
            env |= self.security.worker_env() | self.security.sentinel_worker_env()
        return env

    def cli(self, port: int, *args: str, sentinel: bool = False) -> str:
        """redis-cli against the node or Sentinel on ``port``."""
        access = self.security.cli_args(sentinel=sentinel) if self.security else ()
        return subprocess.run(
            ["redis-cli", *access, "-p", str(port), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()

    def start(self) -> SentinelSet:
        # Sentinel mode is a mode of redis-server itself.
        binary = require_binary("redis-server", "redis-server")
        try:
            self._start_redis("a", [])
            self._start_redis("b", ["--replicaof", "127.0.0.1", str(self.ports["a"])])
            for index, port in enumerate(self.sentinel_ports):
                self._start_sentinel(binary, index, port)
            # Each Sentinel has found the replica and the other Sentinels.
            for sentinel in self.sentinels:
                sentinel.wait_for_line(lambda line: "+slave " in line, START_TIMEOUT)
                first = sentinel.wait_for_line(lambda line: "+sentinel " in line, START_TIMEOUT)
                sentinel.wait_for_line(
                    lambda line, first=first: "+sentinel " in line and line != first,  # type: ignore[misc]
                    START_TIMEOUT,
                )
        except BaseException:
            self.stop()
            raise
        return self

    def _start_redis(self, name: str, extra: list[str]) -> None:
        secure = self.security.server_args(self.ports[name]) if self.security else ()
        child = start_redis_server(
            self.ports[name],
            self.directory / name,
            name=f"redis-{name}",
            extra=[*secure, *extra],
            timeout=START_TIMEOUT,
        )
        self.children.append(child)

    def _start_sentinel(self, binary: str, index: int, port: int) -> None:
        config = self.directory / f"sentinel-{index}.conf"
        security = self.security
        config.write_text(
            (security.sentinel_config(port) if security else f"port {port}\n")
            + f"bind 127.0.0.1\ndir {self.directory}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.ports['a']} 2\n"
            + (security.sentinel_auth(MASTER_NAME) if security else "")
            + f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
        )
        child = Child(f"sentinel-{index}", [binary, str(config), "--sentinel"]).start()
        self.children.append(child)
        self.sentinels.append(child)

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
