"""A local cluster of real processes: redis-server, N workers and HAProxy on loopback.

It is the topology of docker-compose.yml, started as plain processes, used by
``ws-counter cluster``, ``ws-counter demo`` and the tests. Everything it starts
it stops again, by pid, and its scratch directory is removed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .certs import Authority, Certificate
from .monitor import Prometheus
from .processes import Child, ChildFailed, free_port
from .rediscluster import RedisClusterProcesses
from .redissecurity import RedisSecurity
from .redisserver import (
    READY_TIMEOUT,
    REDIS_OPTIONS,
    ClusterError,
    require_binary,
    start_redis_server,
)
from .sentinels import SentinelSet

# Shipped inside the package, so a wheel installed anywhere finds it.
HAPROXY_CONFIG = resources.files(__package__).joinpath("haproxy-local.cfg")
MAX_WORKERS_BEHIND_HAPROXY = 16


@dataclass(frozen=True)
class ClusterOptions:
    workers: int = 3
    port: int = 8080
    host: str = "127.0.0.1"
    haproxy: bool | None = None  # None: use HAProxy when it is installed
    haproxy_config: str | None = None  # None: the one shipped in the package
    redis_options: tuple[str, ...] = REDIS_OPTIONS
    # 0: one redis-server; N >= 3: a Redis Cluster of N primaries, each with a replica.
    redis_cluster: int = 0
    # A Sentinel-managed Redis instead (a primary, a replica, three Sentinels).
    sentinel: bool = False
    worker_env: Mapping[str, str] = field(default_factory=dict)
    log_dir: Path | None = None
    echo: Callable[[str, str], None] | None = None
    # TLS from clients and to Redis: HAProxy serves wss:// and https:// (and reaches
    # the workers over plain HTTP on loopback), Redis takes only TLS and the workers
    # log in as the least-privilege ACL user (tools/redissecurity.py).
    tls: bool = False
    # Redis' half of that on its own (None: as ``tls``); the benchmark sets it apart.
    redis_tls: bool | None = None
    # A real Prometheus scraping the workers every this many seconds, with the alert
    # rules loaded (0: none).
    monitor: float = 0.0


def worker_argv() -> list[str]:
    """How to start a worker process: the worker's own entry point, no tools."""
    return [sys.executable, "-m", "ws_counter.worker", "serve"]


def worker_env(port: int, redis_url: str | None, **extra: str) -> dict[str, str]:
    """A worker's environment: this one, a loopback port, JSON logs, and the Redis to use
    (``redis_url``, or None when ``extra`` names a Redis Cluster's nodes)."""
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REDIS_CLUSTER_NODES")},
        "WS_HOST": "127.0.0.1",
        "WS_PORT": str(port),
        "WS_LOG_FORMAT": "json",
        **extra,
    }
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    if not (env.get("WS_JWT_SECRET") or env.get("WS_JWT_SECRET_FILE")):
        # Loopback workers of a local cluster, a test or the benchmark: tokens off, as
        # the worker requires to be told (WS_AUTH); given a secret, tokens stay on.
        env.setdefault("WS_AUTH", "off")
    return env


def require_free_port(host: str, port: int) -> None:
    """ClusterError, naming --port, when ``port`` is taken: better now than as HAProxy's (or
    the workers') bind error once Redis and the workers are up."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As HAProxy binds: connections of an earlier run in TIME_WAIT do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ClusterError(
                f"{host}:{port} cannot be used ({exc.strerror}); another cluster may be running"
                " there: pick another port with --port"
            ) from None


def is_worker_ready(line: str) -> bool:
    return '"event": "ready"' in line


def is_haproxy_ready(line: str) -> bool:
    return "Loading success" in line


class LocalCluster:
    def __init__(self, options: ClusterOptions) -> None:
        self.options = options
        self.redis_port = free_port()
        self.worker_ports: list[int] = []
        self.workers: list[Child] = []
        self.redis: Child | None = None
        self.redis_cluster: RedisClusterProcesses | None = None
        self.sentinels: SentinelSet | None = None
        self.haproxy: Child | None = None
        self.prometheus: Prometheus | None = None
        self.uses_haproxy = self._decide_haproxy()
        self.security: RedisSecurity | None = None
        self.front_certificate: Certificate | None = None
        self.authority: Authority | None = None
        if options.tls and not self.uses_haproxy:
            raise ClusterError("--tls needs HAProxy, which terminates TLS for the workers")
        # Made once the options hold, and removed by stop(), or here if what follows fails.
        self._scratch = Path(tempfile.mkdtemp(prefix="ws-counter-cluster-"))
        try:
            self._make_certificates()
        except BaseException:
            shutil.rmtree(self._scratch, ignore_errors=True)
            raise

    def _make_certificates(self) -> None:
        options = self.options
        if options.tls if options.redis_tls is None else options.redis_tls:
            self.security = RedisSecurity(self._scratch / "tls")
            self.authority = self.security.authority
        if options.tls:
            self.authority = self.authority or Authority(self._scratch / "tls")
            names = tuple(dict.fromkeys(("localhost", "127.0.0.1", options.host)))
            self.front_certificate = self.authority.issue("front", names)

    def _decide_haproxy(self) -> bool:
        wanted = self.options.haproxy
        if self.options.workers < 1:
            raise ClusterError("a cluster needs at least one worker (--workers 1 or more)")
        if wanted is False:
            return False
        available = shutil.which("haproxy") is not None
        if wanted and not available:
            require_binary("haproxy", "haproxy")
        if self.options.workers > MAX_WORKERS_BEHIND_HAPROXY and available:
            raise ClusterError(
                f"at most {MAX_WORKERS_BEHIND_HAPROXY} workers behind HAProxy"
                " (--no-haproxy lets more share the port)"
            )
        return available

    @property
    def redis_url(self) -> str:
        scheme = "rediss" if self.security else "redis"
        return f"{scheme}://127.0.0.1:{self.redis_port}/0"

    @property
    def url(self) -> str:
        scheme = "wss" if self.options.tls else "ws"
        return f"{scheme}://{self.options.host}:{self.options.port}/"

    @property
    def ca_file(self) -> Path | None:
        """The throwaway CA that signed the front's and Redis' certificates (with --tls)."""
        return self.authority.cert if self.authority else None

    def worker_url(self, index: int) -> str:
        return f"ws://127.0.0.1:{self.worker_ports[index]}/"

    def _log_path(self, name: str) -> Path:
        directory = self.options.log_dir or self._scratch
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f"{name}.log"

    def start(self) -> LocalCluster:
        try:
            require_free_port(self.options.host, self.options.port)
            self.start_redis()
            for index in range(self.options.workers):
                port = free_port() if self.uses_haproxy else self.options.port
                self.worker_ports.append(port)
                self.workers.append(self._worker_child(index))
                self.start_worker(index)
            if self.uses_haproxy:
                self._start_haproxy()
            if self.options.monitor:
                targets = [f"127.0.0.1:{port}" for port in self.worker_ports]
                self.prometheus = Prometheus(
                    self._scratch / "prometheus", targets, self.options.monitor
                ).start(self._log_path("prometheus"))
        except BaseException:
            self.stop()
            raise
        return self

    def start_redis(self) -> None:
        if self.options.sentinel:
            self.sentinels = SentinelSet(self._scratch / "sentinel", self.security).start()
            return
        if self.options.redis_cluster:
            self.redis_cluster = RedisClusterProcesses(
                self.options.redis_cluster,
                self._scratch / "redis-cluster",
                self.options.redis_options,
                log_dir=self.options.log_dir or self._scratch,
                echo=self.options.echo,
                security=self.security,
            ).start()
            return
        self.redis = start_redis_server(
            self.redis_port,
            self._scratch / "redis",
            self.options.redis_options,
            extra=self.security.server_args(self.redis_port) if self.security else (),
            log_path=self._log_path("redis"),
            echo=self.options.echo,
        )

    def stop_redis(self, signum: int = signal.SIGTERM) -> None:
        if self.redis is not None:
            self.redis.stop(signum=signum)

    def _worker_child(self, index: int) -> Child:
        redis = {"REDIS_CLUSTER_NODES": self.redis_cluster.seeds} if self.redis_cluster else {}
        if self.sentinels:
            redis = self.sentinels.worker_env()
        if self.security:
            redis.update(self.security.worker_env())
        env = worker_env(
            self.worker_ports[index],
            None if self.redis_cluster or self.sentinels else self.redis_url,
            WS_REUSE_PORT="false" if self.uses_haproxy else "true",
            **redis,
            **self.options.worker_env,
        )
        return Child(
            f"worker-{index + 1}",
            worker_argv(),
            env=env,
            log_path=self._log_path(f"worker-{index + 1}"),
            echo=self.options.echo,
        )

    def add_worker(self) -> int:
        """One more worker on the shared port (no HAProxy, whose servers are fixed at
        start), ready; its index."""
        if self.uses_haproxy:
            raise ClusterError("workers can be added only without HAProxy (--no-haproxy)")
        index = len(self.workers)
        self.worker_ports.append(self.options.port)
        self.workers.append(self._worker_child(index))
        self.start_worker(index)
        return index

    def start_worker(self, index: int) -> None:
        """Start (or restart) worker ``index`` and wait until it is subscribed to Redis."""
        if self.workers[index].running:
            raise ClusterError(f"{self.workers[index].name} is still running")
        child = self.workers[index] = self._worker_child(index)
        child.start()
        child.wait_for_line(is_worker_ready, READY_TIMEOUT)

    def stop_worker(self, index: int, signum: int = signal.SIGTERM) -> int | None:
        return self.workers[index].stop(signum=signum)

    def _start_haproxy(self) -> None:
        config = self._scratch / "haproxy.cfg"
        config.write_text(self.options.haproxy_config or HAPROXY_CONFIG.read_text())
        tls = {}
        if self.front_certificate is not None:
            bundle = self.front_certificate.pem_bundle(self._scratch / "tls" / "front.pem")
            tls["LB_TLS_CRT"] = str(bundle)
        env = {
            **os.environ,
            **tls,
            "LB_BIND": f"{self.options.host}:{self.options.port}",
            **{
                f"WS_WORKER_{index + 1}": f"127.0.0.1:{port}"
                for index, port in enumerate(self.worker_ports)
            },
        }
        self.haproxy = Child(
            "haproxy",
            [
                require_binary("haproxy", "haproxy"),
                "-W",
                "-db",
                "-f",
                str(config),
            ],
            env=env,
            log_path=self._log_path("haproxy"),
            echo=self.options.echo,
        ).start()
        self.haproxy.wait_for_line(is_haproxy_ready, READY_TIMEOUT)

    @property
    def children(self) -> list[Child]:
        """Every process of the cluster, as started last."""
        found = [c for c in (self.haproxy, self.redis, *self.workers) if c is not None]
        if self.redis_cluster is not None:
            found += self.redis_cluster.nodes.values()
        if self.sentinels is not None:
            found += self.sentinels.children
        if self.prometheus is not None and self.prometheus.child is not None:
            found.append(self.prometheus.child)
        return found

    def stop(self) -> None:
        """Stop Prometheus and HAProxy, then the workers (they drain), then Redis; remove
        scratch files."""
        for child in self.children:
            child.on_exit(None)  # an end asked for is no news
        if self.prometheus is not None:
            self.prometheus.stop()
        if self.haproxy is not None:
            self.haproxy.stop()
        for child in self.workers:
            child.send_signal(signal.SIGTERM)
        for child in self.workers:
            child.stop()
        if self.redis is not None:
            self.redis.stop()
        if self.redis_cluster is not None:
            self.redis_cluster.stop()
        if self.sentinels is not None:
            self.sentinels.stop()
        shutil.rmtree(self._scratch, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


__all__ = [
    "ChildFailed",
    "ClusterError",
    "ClusterOptions",
    "LocalCluster",
    "is_worker_ready",
    "worker_argv",
    "worker_env",
]
