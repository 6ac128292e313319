"""redis-server as a real process on loopback, with the options every deployment ships.

Used by the local cluster, the Redis Cluster launcher, the tests and the benchmark.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from .processes import Child

READY_TIMEOUT = 20.0


class ClusterError(RuntimeError):
    """The cluster cannot start; the message says what is missing and how to get it."""


# The persistence of docker-compose.yml and the k8s StatefulSet: AOF only, each
# write fsynced before Redis answers, so an acknowledged increment survives a
# Redis crash (docs/guarantees.md). A test checks the three agree.
REDIS_PERSISTENCE = ("--save", "", "--appendonly", "yes", "--appendfsync", "always")
# A memory bound that never evicts: at maxmemory Redis refuses writes (the
# service answers unavailable) instead of silently dropping counter state
# (docs/operations.md has the sizing). Half the Kubernetes limit: the rest is
# for the AOF rewrite's copy-on-write and client buffers.
REDIS_MEMORY = ("--maxmemory", "512mb", "--maxmemory-policy", "noeviction")
REDIS_OPTIONS = REDIS_PERSISTENCE + REDIS_MEMORY
# Wherever a primary has replicas: one that has heard from none for 2 s refuses
# writes (NOREPLICAS), so a primary cut off from them stops applying increments
# that a failover would throw away (docs/guarantees.md, "Network faults").
REDIS_REPLICA_GUARD = ("--min-replicas-to-write", "1", "--min-replicas-max-lag", "2")


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ClusterError(
            f"{name} is not installed; install it with: sudo apt-get install -y {package}"
        )
    return path


def redis_argv(
    binary: str, port: int, data_dir: Path, options: tuple[str, ...] = REDIS_OPTIONS
) -> list[str]:
    """Redis on loopback with the given options (persistence, memory)."""
    return [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        *options,
        "--protected-mode",
        "yes",
        "--daemonize",
        "no",
    ]


def start_redis_server(  # noqa: PLR0913 (the server's settings, keyword-only)
    port: int,
    data_dir: Path,
    options: tuple[str, ...] = REDIS_OPTIONS,
    *,
    name: str = "redis",
    extra: Sequence[str] = (),
    log_path: Path | None = None,
    echo: Callable[[str, str], None] | None = None,
    timeout: float = READY_TIMEOUT,
) -> Child:
    """redis-server on loopback, started and accepting connections."""
    binary = require_binary("redis-server", "redis-server")
    data_dir.mkdir(parents=True, exist_ok=True)
    child = Child(
        name,
        [*redis_argv(binary, port, data_dir, options), *extra],
        log_path=log_path,
        echo=echo,
    ).start()
    child.wait_for_line(is_redis_ready, timeout)
    return child


def is_redis_ready(line: str) -> bool:
    return "Ready to accept connections" in line
