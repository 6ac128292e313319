"""The examples in the README and docs/clients.md, run as written against a real cluster.

So that the documentation cannot drift from the product: the README's curl
lines and its Python script run exactly as printed, against a cluster on the
README's address; the Python example of docs/clients.md runs with only the
address changed to the test cluster's.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ws_counter.tools.cluster import ClusterOptions, LocalCluster
from ws_counter.tools.processes import Child

from .conftest import http_get, seconds

ROOT = Path(__file__).parent.parent
DOCUMENTED = "127.0.0.1:8080"


def commands_in(text: str) -> list[list[str]]:
    """The ``curl`` commands of ``sh`` blocks, continuation lines joined."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("curl "):
                commands.append(shlex.split(line, comments=True))
    return commands


@pytest.fixture(scope="module")
def documented_cluster() -> Iterator[LocalCluster]:
    """A cluster on the README's own address, so that its examples run exactly as printed."""
    host, port = DOCUMENTED.split(":")
    with LocalCluster(ClusterOptions(workers=2, host=host, port=int(port))) as running:
        yield running


def test_the_readme_curl_examples_work_as_written(documented_cluster: LocalCluster) -> None:
    commands = commands_in((ROOT / "README.md").read_text())
    assert len(commands) == 2, commands
    outputs = []
    for command in commands:
        result = subprocess.run(
            [*command, "--silent", "--show-error", "--fail-with-body"],
            capture_output=True,
            text=True,
            timeout=seconds(30),
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        outputs.append(json.loads(result.stdout))
    state, ack = outputs
    assert set(state) == {"counter", "total", "seq", "epoch"} and state["counter"] == "votes"
    assert ack["type"] == "ack" and ack["id"] == "signup-8f14e45f"
    assert (ack["total"], ack["seq"]) == (state["total"] + 5, state["seq"] + 1)


def test_the_readmes_python_example_runs_as_printed_and_ends(
    documented_cluster: LocalCluster, tmp_path: Path
) -> None:
    text = (ROOT / "README.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    script = tmp_path / "votes.py"
    script.write_text(example)
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=seconds(60),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    made, now = result.stdout.splitlines()
    assert made.startswith("my +5 made it ") and now.startswith("now ")
    assert int(now.split()[1]) >= int(made.split()[-1])


def test_the_python_example_in_docs_clients_runs(cluster: LocalCluster) -> None:
    text = (ROOT / "docs" / "clients.md").read_text()
    example = re.findall(r"```python\n(.*?)```", text, re.DOTALL)[0]
    address = cluster.url.removeprefix("ws://").rstrip("/")
    result = subprocess.run(
        [sys.executable, "-c", example.replace(DOCUMENTED, address)],
        capture_output=True,
        text=True,
        timeout=seconds(60),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("now ")
    before = int(lines[0].split()[1])
    assert lines[1].startswith(f"acknowledged {before + 5} ")
    assert lines[2] == "refused: overflow"
    assert len(lines) == 4


def test_every_test_the_docs_name_exists() -> None:
    """`tests/x.py` and `tests/x.py::test_name[param]` in the docs name real tests."""
    named = {
        match
        for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
        for match in re.findall(r"`(tests/[\w/]+\.py(?:::\w+)?)(?:\[[\w-]+\])?`", path.read_text())
    }
    assert len(named) > 10
    missing = []
    for reference in sorted(named):
        file, _, test = reference.partition("::")
        source = ROOT / file
        if not source.exists() or (test and f"def {test}(" not in source.read_text()):
            missing.append(reference)
    assert missing == []


def readme_line(start: str) -> list[str]:
    """The one README command line that starts with ``start``, as its words."""
    text = (ROOT / "README.md").read_text()
    (line,) = [line for line in text.splitlines() if line.startswith(start)]
    return shlex.split(line, comments=True)


def test_the_readmes_one_worker_lines_run_as_written(tmp_path: Path) -> None:
    """`redis-server ...` then `ws-counter serve ...`, as printed: a worker that is ready."""
    redis_argv = readme_line("redis-server ")
    subprocess.run(redis_argv, cwd=tmp_path, check=True, timeout=seconds(30))
    info = subprocess.run(
        ["redis-cli", "-p", "6379", "info", "server"],
        capture_output=True, text=True, check=True, timeout=seconds(30),
    ).stdout  # fmt: skip
    redis_pid = int(re.findall(r"process_id:(\d+)", info)[0])
    serve_argv = readme_line("ws-counter serve ")
    worker = Child(
        "readme-worker", [str(Path(sys.executable).parent / "ws-counter"), *serve_argv[1:]]
    )
    try:
        worker.start()
        worker.wait_for_line(lambda line: '"event": "ready"' in line, seconds(30))
        assert http_get("http://127.0.0.1:8001/readyz") == (200, "ready\n")
    finally:
        worker.stop()
        os.kill(redis_pid, signal.SIGTERM)
