"""The servers under test, started as real processes on loopback."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ws_counter.tools.cluster import is_worker_ready, worker_argv, worker_env
from ws_counter.tools.processes import Child, free_port
from ws_counter.tools.rediscluster import RedisClusterProcesses
from ws_counter.tools.redisserver import start_redis_server

# Every contestant meets the same Redis: no persistence, so that the servers are
# measured, not the disk (docs/performance.md says what fsync costs).
NO_PERSISTENCE = ("--save", "", "--appendonly", "no")


@contextlib.contextmanager
def one_redis(directory: Path) -> Iterator[int]:
    """A Redis for one measurement (its port), stopped by pid however the measurement ends:
    also when the server meant to use it fails to start."""
    child, port = start_redis(directory)
    try:
        yield port
    finally:
        child.stop()


def start_redis(directory: Path) -> tuple[Child, int]:
    port = free_port()
    return start_redis_server(port, directory, NO_PERSISTENCE), port


def is_listening(line: str) -> bool:
    return "listening on" in line or "Uvicorn running on" in line


@dataclass
class Contestant:
    """A server as the benchmark sees it: a URL, processes to measure, a way to stop."""

    name: str
    url: str = ""
    children: list[Child] = field(default_factory=list)
    floor: Child | None = None

    @property
    def pids(self) -> list[int]:
        return [child.pid for child in self.children]

    def stop(self) -> None:
        for child in self.children:
            child.stop()

    def __enter__(self) -> Contestant:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_redis_cluster(directory: Path, primaries: int = 3) -> RedisClusterProcesses:
    """A Redis Cluster on loopback, without persistence like the single Redis above."""
    return RedisClusterProcesses(primaries, directory, NO_PERSISTENCE).start()


# Variables every ws-counter worker of this run gets (python -m bench --worker-env), beneath
# the settings a measurement gives its own workers.
_run_worker_env: dict[str, str] = {}


def set_run_worker_env(env: Mapping[str, str]) -> None:
    """``--worker-env``: variables for every ws-counter worker the run starts."""
    _run_worker_env.clear()
    _run_worker_env.update(env)


def run_worker_env() -> dict[str, str]:
    """The variables ``--worker-env`` gave every worker of this run."""
    return dict(_run_worker_env)


def ws_counter(redis_port: int | None, workers: int, **settings: str) -> Contestant:
    """``workers`` workers sharing one port; ``settings`` are more worker variables
    (REDIS_CLUSTER_NODES in place of ``redis_port`` for a Redis Cluster), over the run's."""
    port = free_port()
    redis_url = None if redis_port is None else f"redis://127.0.0.1:{redis_port}/0"
    # The benchmark sends far faster than a person types: no per-connection rate limit.
    # Its lean clients never reconnect, so no worker may close them to even out its
    # share (WS_REBALANCE_RATE): SO_REUSEPORT rarely splits them evenly.
    env = worker_env(
        port,
        redis_url,
        WS_REUSE_PORT="true",
        WS_RATE_LIMIT="0",
        WS_REBALANCE_RATE="0",
        **(_run_worker_env | settings),
    )
    contestant = Contestant(f"ws-counter x{workers}", f"ws://127.0.0.1:{port}/")
    try:
        for index in range(workers):
            child = Child(f"worker-{index}", worker_argv(), env=env)
            contestant.children.append(child.start())
            child.wait_for_line(is_worker_ready, 30)
    except BaseException:
        contestant.stop()  # the workers that did start
        raise
    return contestant


def naive(redis_port: int, fanout: str) -> Contestant:
    port = free_port()
    name = "naive (await each)" if fanout == "await" else "naive + broadcast()"
    child = Child(
        name,
        [
            sys.executable,
            "-m",
            "bench.baselines.naive",
            "--port",
            str(port),
            "--redis-url",
            f"redis://127.0.0.1:{redis_port}/0",
            "--fanout",
            fanout,
        ],
    ).start()
    child.wait_for_line(is_listening, 30)
    return Contestant(name, f"ws://127.0.0.1:{port}/", [child])


def peer(redis_port: int) -> Contestant:
    port = free_port()
    child = Child(
        "broadcaster",
        [sys.executable, "-m", "bench.baselines.peer", "--port", str(port)],
        env={**os.environ, "PEER_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"},
    ).start()
    child.wait_for_line(is_listening, 30)
    return Contestant("broadcaster+starlette", f"ws://127.0.0.1:{port}/", [child])


def floor() -> Contestant:
    port = free_port()
    child = Child(
        "raw-socket floor",
        [sys.executable, "-m", "bench.baselines.floor", "--port", str(port)],
        stdin=True,
    ).start()
    child.wait_for_line(is_listening, 30)
    return Contestant("raw-socket floor", f"ws://127.0.0.1:{port}/", [child], floor=child)
