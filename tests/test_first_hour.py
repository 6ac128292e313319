"""A new user's first hour: every wrong turn taken gets a clear answer, no traceback.

Each test drives the shipped commands as a person does (a terminal's Ctrl-C
is SIGINT to the whole process group) and asserts what they print.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ws_counter.tools.demo import security_line
from ws_counter.tools.processes import Child, free_port

from .conftest import RedisServer, StartWorker, seconds
from .deploy import ROOT

TOOL = [sys.executable, "-m", "ws_counter.tools"]


def run(*argv: str, stdin: str = "", timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=seconds(timeout),
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


# (arguments, exit status, what it says): wrong, missing and hostile values.
WRONG_TURNS: list[tuple[list[str], int, str]] = [
    (["cluster", "--workers", "0"], 2, "argument --workers: '0' is less than 1"),
    (["cluster", "--workers", "-1"], 2, "argument --workers: '-1' is less than 1"),
    (["cluster", "--workers", "three"], 2, "argument --workers: 'three' is not a whole number"),
    (["cluster", "--workers", "17"], 1, "at most 16 workers behind HAProxy (--no-haproxy"),
    (["demo", "--no-haproxy", "--workers", "0"], 2, "'0' is less than 1"),
    (["cluster", "--port", "0"], 2, "argument --port: '0' is less than 1"),
    (["cluster", "--port", "99999"], 2, "argument --port: '99999' is more than 65535"),
    (["cluster", "--redis-cluster", "2"], 2, "a Redis Cluster needs at least 3 primaries"),
    (["demo", "--clients", "0"], 2, "argument --clients: '0' is less than 1"),
    (["demo", "--increments", "-5"], 2, "argument --increments: '-5' is less than 1"),
    (["client", "ftp://127.0.0.1/"], 2, "is not a ws://, wss://, http:// or https:// URL"),
    (["client", "ws://127.0.0.1:1/", "--ca", "/nonexistent.pem"], 2, "No such file"),
    (["loadtest", "ftp://h/", "--increments", "1"], 2,
     "the URL must start with ws://, wss://, http:// or https://"),
    (["loadtest", "ws://127.0.0.1:1/", "--clients", "0"], 2, "--clients"),
    (["loadtest", "ws://127.0.0.1:1/", "--increments", "1", "--ca", "/nonexistent.pem"], 2,
     "--ca /nonexistent.pem"),
    (["loadtest", "ws://127.0.0.1:1/", "--increments", "5"], 2,
     "no client could connect to ws://127.0.0.1:1/: Connection refused"),
    (["make-secrets"], 2, "the following arguments are required: directory"),
    (["make-secrets", "/proc/no/such"], 1, "make-secrets: /proc/no: No such file or directory"),
    (["serve", "--port", "x"], 2, "ws-counter serve: --port: 'x' is not a whole number"),
    (["serve", "--redis-timeout", "-1"], 2, "must be a non-negative number of seconds"),
    (["serve", "--redis-tls-ca-file", "/nonexistent"], 2, "REDIS_TLS_CA_FILE: /nonexistent"),
    (["serve"], 2, "WS_JWT_SECRET is not set, and tokens are required: set WS_JWT_SECRET or"
     " WS_JWT_SECRET_FILE, or WS_AUTH=off"),
    (["serve", "--auth", "off", "--jwt-secret", "a-secret-long-enough-for-hs256-0123456789"], 2,
     "WS_AUTH=off and WS_JWT_SECRET: tokens on or off, not both"),
    (["healthcheck", "--port", "1"], 1, "http://127.0.0.1:1/healthz"),
    (["loadtest", "ws://127.0.0.1:1/", "--rate", "-1", "--duration", "1"], 2,
     "--rate must be positive"),
    (["loadtest", "ws://127.0.0.1:1/", "--increments", "1", "--counter", "BAD!"], 2,
     "invalid counter name 'BAD!'"),
    (["client", "ws://[::1"], 2, "Invalid IPv6 URL"),
    (["loadtest", "ws://127.0.0.1:1/", "--increments", "1", "--converge-timeout", "-1"], 2,
     "--converge-timeout must not be negative"),
    (["loadtest", "ws://127.0.0.1:1/counters/votes", "--increments", "1", "--counter", "polls"],
     2, "the URL names counter 'votes' but --counter says 'polls'"),
    (["loadtest", "ws://127.0.0.1:1/counters/Bad", "--increments", "1"], 2,
     "invalid counter name 'Bad'"),
    (["nonsense"], 2, "invalid choice: 'nonsense'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "status", "says"), WRONG_TURNS, ids=[" ".join(t[0]) for t in WRONG_TURNS]
)
def test_a_wrong_value_gets_its_answer(argv: list[str], status: int, says: str) -> None:
    result = run(*TOOL, *argv)
    output = result.stdout + result.stderr
    assert result.returncode == status, output
    assert says in output
    assert "Traceback" not in output and "Future exception" not in output


def test_plot_without_matplotlib_is_refused_before_the_run(tmp_path: Path) -> None:
    """--plot where matplotlib cannot be imported ends at once with exit 2 (1 means an
    incorrect result), before a single client connects."""
    shadow = tmp_path / "matplotlib"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('not installed here')\n")
    result = subprocess.run(
        [*TOOL, "loadtest", "ws://127.0.0.1:1/", "--increments", "1", "--plot", "x.png"],
        capture_output=True,
        text=True,
        timeout=seconds(30),
        check=False,
        env={**os.environ, "PYTHONPATH": str(tmp_path), "COLUMNS": "200"},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--plot needs matplotlib" in result.stdout
    assert "no client could connect" not in result.stdout


@pytest.mark.parametrize(
    "argv",
    [
        [*TOOL, "make-secrets", "--help"],
        [sys.executable, "-m", "ws_counter.tools.monitor", "--help"],
    ],
    ids=["make-secrets", "ws_counter.tools.monitor"],
)
def test_help_is_plain_text(argv: list[str]) -> None:
    """--help prints usage in plain words: no reStructuredText quotes, no YAML."""
    result = run(*argv)
    assert result.returncode == 0 and result.stdout.startswith("usage:"), result.stdout
    assert "``" not in result.stdout and "apiVersion" not in result.stdout


def test_a_taken_port_is_named_with_the_flag_to_change_it() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = run(*TOOL, "cluster", "--port", str(port))
    assert result.returncode == 1
    assert f"127.0.0.1:{port} cannot be used" in result.stderr
    assert "pick another port with --port" in result.stderr


def test_a_load_test_that_cannot_connect_ends_at_once() -> None:
    started = time.monotonic()
    result = run(*TOOL, "loadtest", "ws://127.0.0.1:1/", "--increments", "5")
    assert result.returncode == 2
    assert time.monotonic() - started < seconds(15), "it waited for the converge timeout"


def test_dev_sh_answers_a_typo_with_its_usage() -> None:
    for argv, says in ((["tset"], "no command 'tset'"), ([], "usage:")):
        result = run("bash", str(ROOT / "scripts" / "dev.sh"), *argv)
        assert result.returncode == 2
        assert says in result.stderr and "bash scripts/dev.sh demo" in result.stderr
        assert "set -euo" not in result.stderr


def interactive_client(url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*TOOL, "client", url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def ctrl_c(process: subprocess.Popen[str]) -> str:
    """SIGINT to the process group, as a terminal sends it; all it printed."""
    os.killpg(process.pid, signal.SIGINT)
    output, _ = process.communicate(timeout=seconds(20))
    assert process.returncode == 130, output
    assert "Traceback" not in output
    return output


def wait_for_output(process: subprocess.Popen[str], pattern: str, timeout: float = 15) -> str:
    """Lines read until one matches ``pattern``."""
    assert process.stdout is not None
    seen = []
    deadline = time.monotonic() + seconds(timeout)
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        seen.append(line)
        if re.search(pattern, line):
            return "".join(seen)
    raise AssertionError(f"no line matched {pattern!r}: {''.join(seen)}")


def test_numbers_typed_while_disconnected_are_named_on_ctrl_c() -> None:
    client = interactive_client("ws://127.0.0.1:1/")
    assert client.stdin is not None
    wait_for_output(client, "connection lost")
    client.stdin.write("5\n7\n")
    client.stdin.flush()
    wait_for_output(client, "not connected yet: 7 is sent once connected")
    assert "never sent: 5, 7 (not applied)" in ctrl_c(client)


def test_an_increment_redis_never_confirmed_is_named_on_ctrl_c(
    start_worker: StartWorker, redis_server: RedisServer, counter_name: str
) -> None:
    worker = start_worker()
    client = interactive_client(f"{worker.url}counters/{counter_name}")
    assert client.stdin is not None
    client.stdin.write("2\n")
    client.stdin.flush()
    wait_for_output(client, r"acknowledged: total 2 \(seq 1\)")
    assert redis_server.child is not None
    redis_server.child.send_signal(signal.SIGSTOP)
    try:
        # The answer to "x" comes once "3" was taken, in the order typed.
        client.stdin.write("3\nx\n")
        client.stdin.flush()
        wait_for_output(client, "nothing sent")
        output = ctrl_c(client)
    finally:
        redis_server.child.send_signal(signal.SIGCONT)
    assert "not confirmed: 3 (sent; each was applied once or not at all" in output


def test_the_client_shows_its_own_increment_once(
    start_worker: StartWorker, counter_name: str
) -> None:
    """Its own increments' totals come through the fan-out too, often before the ack: each
    is shown once, as the ack, however the two race (30 of them, sent at once)."""
    worker = start_worker(WS_RATE_LIMIT="0")  # faster than a person types
    typed = "".join(f"{n}\n" for n in range(1, 31))
    result = run(*TOOL, "client", f"{worker.url}counters/{counter_name}", stdin=typed)
    assert result.returncode == 0, result.stdout
    lines = [line.removeprefix("Number: ") for line in re.split(r"[\r\n]+", result.stdout)]
    acks = [line for line in lines if line.startswith("acknowledged: total")]
    assert len(acks) == 30, result.stdout
    assert "acknowledged: total 465 (seq 30)" in acks
    pushed = [line for line in lines if line.startswith("total ")]
    assert pushed == [], f"own totals shown again: {pushed}"


def test_help_typed_in_the_client_explains_it(start_worker: StartWorker) -> None:
    worker = start_worker()
    result = run(*TOOL, "client", worker.url, stdin="help\n")
    assert result.returncode == 0, result.stdout
    assert "type a whole number and Enter to add it" in result.stdout
    assert "not a whole number" not in result.stdout


def test_a_process_of_the_cluster_that_dies_is_reported(tmp_path: Path) -> None:
    """A worker killed under `ws-counter cluster` is named at once, with how it ended and
    how many workers still serve; the banner had listed it."""
    cluster = subprocess.Popen(
        [*TOOL, "cluster", "--workers", "2", "--port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    seen = wait_for_output(cluster, "Ctrl-C stops everything", timeout=60)
    (victim,) = re.findall(r"worker-2 +pid (\d+)", seen)
    os.kill(int(victim), signal.SIGKILL)
    said = wait_for_output(cluster, "worker-2", timeout=15)
    assert f"worker-2 (pid {victim}) killed by SIGKILL" in said
    assert "1 of 2 workers still serve" in said
    os.killpg(cluster.pid, signal.SIGINT)
    output, _ = cluster.communicate(timeout=seconds(30))
    assert cluster.returncode == 0 and "nothing left running" in output, output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    "argv",
    [["--workers", "17"], ["--port", "{taken}"]],
    ids=["refused-options", "taken-port"],
)
def test_a_failed_start_leaves_no_scratch_folder(tmp_path: Path, argv: list[str]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = str(squatter.getsockname()[1])
        result = subprocess.run(
            [*TOOL, "cluster", *(arg.replace("{taken}", taken) for arg in argv)],
            capture_output=True, text=True, timeout=seconds(60), check=False,
            env={**os.environ, "TMPDIR": str(tmp_path)},
        )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == [], "a failed start left its scratch folder"


def test_ctrl_c_on_a_standalone_load_test_says_so_without_a_traceback(
    start_worker: StartWorker,
) -> None:
    worker = start_worker()
    load = subprocess.Popen(
        [*TOOL, "loadtest", worker.url, "--clients", "5", "--rate", "20", "--duration", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    wait_for_output(load, r"acked [1-9]", timeout=60)
    output = ctrl_c(load)
    assert "interrupted: the run has no result" in output
    assert output.count("\n") < 12, output


def test_the_client_shows_why_the_worker_refuses(start_worker: StartWorker) -> None:
    """A worker whose Redis is down answers 503 with the reason; the client shows it."""
    worker = start_worker(f"redis://127.0.0.1:{free_port()}/0", wait_ready=False)
    client = interactive_client(worker.url)
    try:
        seen = wait_for_output(client, "connection lost")
    finally:
        ctrl_c(client)
    assert "HTTP 503: Redis is unavailable" in seen


def test_the_worker_logs_a_missing_redis_once_not_every_reconnect(
    start_worker: StartWorker,
) -> None:
    worker = start_worker(f"redis://127.0.0.1:{free_port()}/0", wait_ready=False)
    assert worker.child is not None
    worker.wait_for_event("redis_lost")
    # Several reconnects (backoff from 50 ms to 2 s) later: still the one line.
    time.sleep(seconds(4))
    lines = [line for line in worker.child.output() if '"redis_lost"' in line]
    assert len(lines) == 1, lines
    assert "cannot subscribe to Redis" in lines[0] and "redis subscription lost" not in lines[0]


def test_the_http_apis_json_ends_with_a_newline(
    start_worker: StartWorker, counter_name: str
) -> None:
    worker = start_worker()
    request = urllib.request.Request(
        f"{worker.http}/counters/{counter_name}", headers={"Accept": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=seconds(5)) as response:
        body = response.read()
    assert body.endswith(b"}\n") and json.loads(body)["counter"] == counter_name


def test_ctrl_c_during_the_demos_load_test_stops_everything_quietly() -> None:
    port = free_port()
    demo = subprocess.Popen(
        [*TOOL, "demo", "--workers", "2", "--port", str(port),
         "--clients", "50", "--increments", "100000"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    seen = wait_for_output(demo, r"loadtest: .* acked [1-9]", timeout=90)
    pids = [int(pid) for pid in re.findall(r"pid (\d+)", seen)]
    assert len(pids) >= 4, seen  # HAProxy, two workers, Redis
    output = seen + ctrl_c(demo)
    assert "interrupted." in output and "stopped; nothing left running." in output
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), f"pid {pid} left running"


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_the_demos_closing_command_runs_as_pasted() -> None:
    port = free_port()
    demo = Child(
        "demo",
        [*TOOL, "demo", "--workers", "1", "--port", str(port), "--clients", "5",
         "--increments", "2"],
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    demo.start()
    try:
        demo.wait_for_line(lambda text: "Counter page:" in text, seconds(120))
        output = demo.output()
        command = output[
            next(i for i, line in enumerate(output) if "add to the counter" in line) + 1
        ]
        result = subprocess.run(
            ["sh", "-c", command.strip()],
            input="1\n",
            capture_output=True,
            text=True,
            timeout=seconds(30),
            check=False,
            env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
        )
        assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
        assert "acknowledged: total" in result.stdout
        assert shlex.split(command)[1:3] == ["client", f"ws://127.0.0.1:{port}/counters/default"]
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(seconds(60))


@pytest.mark.parametrize("haproxy", [True, False])
def test_the_banner_names_the_hops_tls_covers_and_the_one_it_does_not(haproxy: bool) -> None:
    """`cluster --tls` says which hops are encrypted, not "every hop": HAProxy reaches the
    workers over plain HTTP on loopback."""
    line = security_line(tls=True, haproxy=haproxy)
    assert "every hop" not in line
    assert "from clients to HAProxy" in line and "to Redis" in line
    assert ("plain HTTP on loopback" in line) is haproxy
    assert "every hop" not in security_line(tls=False, haproxy=haproxy)
