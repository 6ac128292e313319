"""The real Dockerfile and docker-compose.yml, run under podman-compose.

Needs podman, podman-compose and the base images (or their local stand-ins
built by standin-images.sh; `bash scripts/dev.sh test` prepares them when it
can). Run alone with:  pytest -m containers

What differs from Docker, and how this test deals with it:
* podman-compose 1.0.3 ignores `profiles`, so services are named explicitly
  on `up`; it ignores `depends_on` conditions, which the workers survive
  because they wait for Redis themselves.
* Health checks do not run without systemd, so readiness is read from the
  load balancer's own health checks (its log), not from `podman ps`.
* podman-compose 1.0.3 exits 0 when a build fails, so the test removes the
  worker image first and checks that the build made one.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ws_counter.tools.processes import Child, free_port

from .conftest import seconds
from .deploy import COMPOSE_FILE, ROOT
from .loadrun import BackgroundLoadtest

pytestmark = pytest.mark.containers

NGINX_IMAGE = "nginx:1.26-bookworm"
SERVICES = ("redis", "worker", "lb")
WORKER_IMAGE: str = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["worker"]["image"]


def require(command: str) -> str:
    path = shutil.which(command)
    if path is None:
        pytest.fail(
            f"{command} is not installed: the container test needs podman and podman-compose"
            " (standin-images.sh installs both)"
        )
    return path


class ComposeProject:
    """One docker-compose.yml project under podman-compose (with ``extra`` compose files),
    torn down completely."""

    def __init__(self, lb_port: int, extra: tuple[Path, ...] = ()) -> None:
        self.name = f"wsc-test-{secrets.token_hex(3)}"
        self.lb_port = lb_port
        self.lb_tls_port = free_port()
        self.files = [arg for path in (COMPOSE_FILE, *extra) for arg in ("-f", str(path))]
        self.compose = require("podman-compose")
        self.podman = require("podman")

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.compose, "-p", self.name, *self.files, *args],
            capture_output=True,
            text=True,
            timeout=seconds(timeout),
            check=False,
            cwd=ROOT,
            env={
                "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LB_PORT": str(self.lb_port),
                "LB_TLS_PORT": str(self.lb_tls_port),
            },
        )
        return result

    def containers(self, service: str) -> list[str]:
        """Running container names of a service, in replica order."""
        result = subprocess.run(
            [
                self.podman,
                "ps",
                "--format",
                "json",
                "--filter",
                f"label=com.docker.compose.project={self.name}",
                "--filter",
                f"label=com.docker.compose.service={service}",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds(30),
        )
        return sorted(
            name for entry in json.loads(result.stdout or "[]") for name in entry["Names"]
        )

    def down(self) -> None:
        self.run("down", "-v", "-t", "15")
        # podman-compose 1.0.3 leaves the project network behind.
        subprocess.run(
            [self.podman, "network", "rm", "-f", f"{self.name}_default"],
            capture_output=True,
            check=False,
            timeout=seconds(60),
        )


@pytest.fixture
def project(request: pytest.FixtureRequest) -> Iterator[ComposeProject]:
    extra: tuple[Path, ...] = getattr(request, "param", ())
    running = ComposeProject(free_port(), extra)
    try:
        yield running
    finally:
        running.down()
    assert not running.containers("worker") and not running.containers("redis")


def start(project: ComposeProject, services: tuple[str, ...] = SERVICES) -> list[str]:
    """Build, make the secrets, start Redis, the workers and HAProxy; the workers' names
    once HAProxy has them all up. podman-compose ignores depends_on conditions, so the
    one-shot secrets service runs to its end first, as the compose file's header says."""
    # podman-compose 1.0.3 exits 0 when the build fails, and `up` would then run the
    # image an earlier build left: so no image is left to run, and one must come out.
    podman_quietly(project.podman, "image", "rm", "-f", WORKER_IMAGE)
    built = project.run("build", "worker")
    exists = podman_quietly(project.podman, "image", "exists", WORKER_IMAGE)
    assert built.returncode == 0 and exists.returncode == 0, built.stdout + built.stderr
    made = project.run("run", "--rm", "secrets")
    assert made.returncode == 0, made.stdout + made.stderr
    started = project.run("up", "-d", *services)
    assert started.returncode == 0, started.stdout + started.stderr
    workers = project.containers("worker")
    assert len(workers) == 3, workers
    for worker in workers:
        # The image holds the compiled build (the Dockerfile's default), and runs it.
        wait_for_log_line(project, worker, r'"event": "listening".*"build": "compiled"')
        wait_for_log_line(project, worker, r'"event": "ready"')
    for front in (s for s in services if s.startswith("lb")):
        wait_for_balanced_workers(project, front, workers)
    return workers


def podman_quietly(podman: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [podman, *args], capture_output=True, text=True, timeout=seconds(60), check=False
    )


def wait_for_log_line(project: ComposeProject, container: str, pattern: str) -> None:
    follower = Child(container, [project.podman, "logs", "-f", container]).start()
    try:
        follower.wait_for_line(lambda text: re.search(pattern, text) is not None, seconds(120))
    finally:
        follower.stop()


def wait_for_balanced_workers(project: ComposeProject, front: str, workers: list[str]) -> None:
    """Wait until the HAProxy of service ``front`` has every worker up."""
    (lb,) = project.containers(front)
    follower = Child("lb-log", [project.podman, "logs", "-f", lb]).start()
    try:
        up: set[str] = set()
        pattern = re.compile(r"Server workers/(worker\d+) .*is UP")
        while len(up) < len(workers):
            line = follower.wait_for_line(
                lambda text: (
                    (match := pattern.search(text)) is not None and match.group(1) not in up
                ),
                seconds(120),
            )
            match = pattern.search(line)
            assert match is not None
            up.add(match.group(1))
    finally:
        follower.stop()


def test_compose_cluster_builds_serves_and_counts_exactly_through_a_worker_kill(
    project: ComposeProject, tmp_path: Path
) -> None:
    workers = start(project)

    # The user story: `docker compose run --rm loadtest`.
    story = project.run("run", "--rm", "loadtest", timeout=300)
    assert story.returncode == 0, story.stdout + story.stderr
    assert "CORRECT" in story.stdout

    run = BackgroundLoadtest(
        f"ws://127.0.0.1:{project.lb_port}/",
        *("--clients", "150", "--rate", "200", "--duration", "6", "--counter", "compose-kill"),
        json_path=tmp_path / "report.json",
    )
    run.wait_until_acking()
    killed = subprocess.run(
        [project.podman, "kill", workers[1]],
        capture_output=True,
        text=True,
        timeout=seconds(60),
        check=False,
    )
    assert killed.returncode == 0, killed.stderr
    status, report = run.finish()
    assert status == 0, run.output
    assert report is not None and report["correct"] is True
    assert report["reconnects"] > 0, "the killed worker had clients that reconnected"
    assert report["increments_acked"] == report["increments_sent"]


def test_compose_cluster_with_tls_counts_exactly_over_wss(project: ComposeProject) -> None:
    """The tls profile: a second HAProxy, lb-tls, serves wss:// with the deployment CA's
    certificate, and the load test trusts that CA (`docker compose --profile tls run --rm
    loadtest-tls`), while lb goes on serving ws://."""
    start(project, (*SERVICES, "lb-tls"))
    story = project.run("run", "--rm", "loadtest-tls", timeout=300)
    assert story.returncode == 0, story.stdout + story.stderr
    assert "CORRECT" in story.stdout and "wss://lb-tls:8080/" in story.stdout


def test_nginx_example_config_is_valid() -> None:
    podman = require("podman")
    config = ROOT / "deploy" / "nginx" / "ws-counter.conf"
    main = ROOT / "deploy" / "nginx" / "nginx.conf"
    result = subprocess.run(
        [
            podman,
            "run",
            "--rm",
            "-v",
            f"{config}:/etc/nginx/conf.d/default.conf:ro",
            "-v",
            f"{main}:/etc/nginx/nginx.conf:ro",
            NGINX_IMAGE,
            "nginx",
            "-t",
        ],
        capture_output=True,
        text=True,
        timeout=seconds(120),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "syntax is ok" in result.stderr
