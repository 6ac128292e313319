"""A Redis as a deployment runs it, from ``ws-counter make-secrets``: TLS only, the ACL
file, the admin for operators' commands and the least-privilege user for workers."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ws_counter.tools.makesecrets import make_secrets
from ws_counter.tools.processes import Child
from ws_counter.tools.redissecurity import ADMIN_USER, WORKER_USER, config_as_flags
from ws_counter.tools.redisserver import require_binary, start_redis_server

from .conftest import WorkerProcess, seconds


class Admin:
    """redis-cli as the admin, over TLS, on ``port``: how a runbook talks to Redis."""

    def __init__(self, secrets: Path, port: int, host: str = "127.0.0.1") -> None:
        self.secrets, self.port, self.host = secrets, port, host

    def __call__(self, *args: str) -> str:
        argv = [require_binary("redis-cli", "redis-server"), "-h", self.host,
                "-p", str(self.port), "--tls",
                "--cacert", str(self.secrets / "ca.crt"), "--user", ADMIN_USER,
                "--no-auth-warning", *args]  # fmt: skip
        password = (self.secrets / "admin-password").read_text().strip()
        env = {**os.environ, "REDISCLI_AUTH": password}
        return subprocess.run(argv, env=env, capture_output=True, text=True, check=True,
                              timeout=seconds(60)).stdout  # fmt: skip


def secured_worker(secrets: Path, port: int, listen: int | None = None) -> WorkerProcess:
    """A started worker on the Redis at ``port``, as the least-privilege user over TLS
    (listening on ``listen``, or a free port)."""
    env = {
        "REDIS_TLS": "true",
        "REDIS_TLS_CA_FILE": str(secrets / "ca.crt"),
        "REDIS_USERNAME": WORKER_USER,
        "REDIS_PASSWORD_FILE": str(secrets / "worker-password"),
        # Load tests send faster than a person types.
        "WS_RATE_LIMIT": "0",
    }
    return WorkerProcess(f"rediss://localhost:{port}/0", env, listen).start()


def made_secrets(directory: Path) -> Path:
    """``ws-counter make-secrets`` into ``directory``/secrets, mounted where they are."""
    secrets = directory / "secrets"
    make_secrets(secrets, mounted_at=str(secrets))
    return secrets


def start_secured_redis(secrets: Path, port: int, data: Path, *extra: str) -> Child:
    """redis-server on ``port`` with the shipped redis.conf of ``secrets`` (and ``extra``)."""
    options = config_as_flags((secrets / "redis.conf").read_text(), port)
    return start_redis_server(port, data, extra=(*options, *extra))


def until(check: Callable[[], bool], timeout: float = 30) -> None:
    """Wait for a Redis state that Redis announces to no client (a replica in sync, the
    cluster's state, an AOF rewrite done): ask every 100 ms, for at most ``timeout``."""
    deadline = time.monotonic() + seconds(timeout)
    while not check():
        assert time.monotonic() < deadline, "Redis did not reach the state in time"
        time.sleep(0.1)
