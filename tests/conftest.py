"""Fixtures: a real redis-server and real worker processes on free loopback ports.

Timeouts scale from one unit, WS_TEST_TIME_SCALE (default 1), so that a slow
machine can stretch them without editing tests.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser

from ws_counter.tools.cluster import (
    ClusterOptions,
    LocalCluster,
    is_worker_ready,
    worker_argv,
    worker_env,
)
from ws_counter.tools.processes import Child, free_port
from ws_counter.tools.redisserver import READY_TIMEOUT, REDIS_OPTIONS, start_redis_server

from .browser import chromium

UNIT = float(os.environ.get("WS_TEST_TIME_SCALE", "1"))
ARTIFACTS = Path(os.environ.get("WS_TEST_ARTIFACTS", Path(__file__).parent.parent / "artifacts"))


# The start_worker fixture: start a worker (keyword arguments become its environment).
StartWorker = Callable[..., "WorkerProcess"]


def seconds(value: float) -> float:
    return value * UNIT


class RedisServer:
    def __init__(self, directory: Path, options: tuple[str, ...] = REDIS_OPTIONS) -> None:
        self.port = free_port()
        self.directory = directory
        self.options = options
        self.child: Child | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.child = start_redis_server(
            self.port, self.directory, self.options, timeout=seconds(READY_TIMEOUT)
        )
        return self

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.child is not None:
            self.child.stop(signum=signum)

    def cli(self, *args: str) -> str:
        return subprocess.run(
            ["redis-cli", "-p", str(self.port), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=seconds(10),
        ).stdout.strip()


class WorkerProcess:
    def __init__(
        self, redis_url: str, env: dict[str, str] | None = None, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.redis_url = redis_url
        self.extra_env = env or {}
        self.child: Child | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_ready: bool = True) -> WorkerProcess:
        env = worker_env(self.port, self.redis_url, **self.extra_env)
        self.child = Child(f"worker:{self.port}", worker_argv(), env=env).start()
        self.child.wait_for_line(
            is_worker_ready if wait_ready else _is_listening, seconds(READY_TIMEOUT)
        )
        return self

    def wait_for_event(
        self, event: str, timeout: float = 10.0, after: int = 0
    ) -> dict[str, object]:
        assert self.child is not None
        line = self.child.wait_for_line(
            lambda text: f'"event": "{event}"' in text, seconds(timeout), after=after
        )
        document: dict[str, object] = json.loads(line)
        return document

    def stop(self, signum: int = signal.SIGTERM) -> int | None:
        return self.child.stop(signum=signum, timeout=seconds(15)) if self.child else None


def _is_listening(line: str) -> bool:
    return '"event": "listening"' in line


def counter_state(cluster: LocalCluster, counter: str) -> dict[str, Any]:
    """A counter's state from the HTTP API, through the cluster's front."""
    request = urllib.request.Request(
        cluster.url.replace("ws://", "http://") + f"counters/{counter}",
        headers={"Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=seconds(10)) as response:
        document: dict[str, Any] = json.loads(response.read())
    return document


def http_call(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One HTTP request on a fresh connection: status, headers (lower case), JSON body."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(str(parts.hostname), parts.port, timeout=seconds(10))
    all_headers = {"Accept": "application/json", **(headers or {})}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    try:
        connection.request(method, path, body=data, headers=all_headers)
        response = connection.getresponse()
        text = response.read()
        found = {name.lower(): value for name, value in response.getheaders()}
    finally:
        connection.close()
    document = (
        json.loads(text) if found.get("content-type", "").startswith("application/json") else text
    )
    return response.status, found, document


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=seconds(timeout)) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def scratch() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="ws-counter-test-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    directory = Path(tempfile.mkdtemp(prefix="ws-counter-redis-"))
    server = RedisServer(directory).start()
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def start_worker(redis_server: RedisServer) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(redis_url: str | None = None, wait_ready: bool = True, **env: str) -> WorkerProcess:
        worker = WorkerProcess(redis_url or redis_server.url, env).start(wait_ready=wait_ready)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="module")
def start_worker_once(redis_server: RedisServer) -> Iterator[WorkerProcess]:
    """One worker for a module's hypothesis cases: small session window, no rate limit."""
    worker = WorkerProcess(
        redis_server.url,
        {"WS_SESSION_WINDOW": "4", "WS_MAX_PENDING_INCREMENTS": "4", "WS_RATE_LIMIT": "0"},
    ).start()
    yield worker
    worker.stop()


@pytest.fixture
def counter_name(request: pytest.FixtureRequest) -> str:
    """A counter name of this test's own, so tests sharing a Redis never see each other."""
    name = request.node.name.lower()
    cleaned = "".join(ch if ch.isalnum() else "-" for ch in name)
    return ("t-" + cleaned)[:64].rstrip("-")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless (tests/browser.py), shared by a module's tests."""
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """Redis, workers and HAProxy as real processes, shared by a module's tests.

    A module sets CLUSTER_WORKERS to say how many workers it needs (default 2).
    """
    workers = getattr(request.module, "CLUSTER_WORKERS", 2)
    with LocalCluster(ClusterOptions(workers=workers, port=free_port())) as running:
        yield running


def pytest_configure(config: pytest.Config) -> None:
    """Children hear Ctrl-C as from a terminal, however the suite was started.

    A non-interactive shell starts a background job with SIGINT ignored, and an
    ignored signal stays ignored across fork and exec: every tool the Ctrl-C
    tests start would then ignore the SIGINT they send. A handler, unlike an
    ignored disposition, is reset to the default by exec.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# Every test belongs to one tier; a test marked with none of these is an integration test.
TIERS = frozenset(
    {"unit", "cluster", "redis_cluster", "partition", "containers", "browser", "bench", "install"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tier that has no marker of its own, so that ``-m integration`` selects it."""
    for item in items:
        if not TIERS & {mark.name for mark in item.iter_markers()}:
            item.add_marker(pytest.mark.integration)
