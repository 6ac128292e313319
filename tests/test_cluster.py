"""The cluster command and the load-test tool against a real local cluster."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ws_counter.tools.cluster import LocalCluster
from ws_counter.tools.processes import Child, free_port
from ws_counter.worker.store.keys import state_key

from .conftest import ARTIFACTS, http_get, seconds
from .loadrun import BackgroundLoadtest

pytestmark = pytest.mark.cluster


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cluster_command_comes_up_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """`ws-counter cluster` starts Redis, workers and HAProxy; Ctrl-C stops them all."""
    port = free_port()
    child = Child(
        "cluster",
        [
            sys.executable,
            "-m",
            "ws_counter.tools",
            "cluster",
            "--workers",
            "2",
            "--port",
            str(port),
        ],
        env={**os.environ, "TMPDIR": str(tmp_path), "COLUMNS": "200"},
    ).start()
    child.wait_for_line(lambda line: "Ctrl-C stops everything" in line, seconds(60))
    output = "\n".join(child.output())
    pids = [int(pid) for pid in re.findall(r"pid (\d+)", output)]
    assert len(pids) == 4, output  # haproxy, 2 workers, redis
    assert all(pid_alive(pid) for pid in pids)
    assert http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    # Probes and metrics are for health checks and Prometheus, not through the front.
    assert http_get(f"http://127.0.0.1:{port}/readyz")[0] == 404
    assert any(tmp_path.iterdir()), "the cluster keeps its scratch files under TMPDIR"
    child.send_signal(signal.SIGINT)
    assert child.wait(seconds(60)) == 0
    assert not any(pid_alive(pid) for pid in pids), "a process outlived the cluster"
    assert list(tmp_path.iterdir()) == [], "scratch files were left behind"
    assert "nothing left running" in "\n".join(child.output())


CLUSTER_WORKERS = 3


def run_loadtest(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ws_counter.tools", "loadtest", *args, "--loopback-only"],
        capture_output=True,
        text=True,
        timeout=seconds(timeout),
        check=False,
    )


def test_loadtest_reports_exact_totals_through_the_load_balancer(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """The load test through HAProxy exits 0 with a JSON report whose totals match."""
    report_path = ARTIFACTS / "loadtest-report.json"
    plot_path = ARTIFACTS / "loadtest-latency.png"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    result = run_loadtest(
        cluster.url,
        "--clients",
        "120",
        "--increments",
        "10",
        "--processes",
        "2",
        "--counters",
        "2",
        "--counter",
        "lt-exact",
        "--json",
        str(report_path),
        "--plot",
        str(plot_path),
        "--max-failed-connects",
        "0",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    assert report["correct"] is True and report["errors"] == []
    assert report["increments_acked"] == 1200
    assert report["expected_total"] == report["observed_total"]
    for key in ("connect_ms", "ack_ms", "fanout_ms"):
        assert set(report[key]) >= {"p50", "p95", "p99", "max"}
        assert report[key]["count"] > 0
    assert report["fanout_ms"]["count"] == 1200
    assert report["parameters"]["clients"] == 120
    assert plot_path.stat().st_size > 10_000
    assert "CORRECT" in result.stdout


def test_a_load_test_in_shards_is_judged_as_one_run(cluster: LocalCluster, tmp_path: Path) -> None:
    """Three shards at once (as three machines would run them), each exact on its own
    counters; merge judges them as one run: every client and increment, exact."""
    argv = [sys.executable, "-m", "ws_counter.tools", "loadtest", cluster.url, "--loopback-only"]
    plan = ["--clients", "60", "--counters", "6", "--counter", "sharded", "--increments", "5"]
    shards = [
        subprocess.Popen(
            [*argv, *plan, "--shard", f"{i}/3", "--json", str(tmp_path / f"shard-{i}.json")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(3)
    ]
    outputs = [shard.communicate(timeout=seconds(120))[0] for shard in shards]
    assert [shard.returncode for shard in shards] == [0, 0, 0], outputs
    reports = [str(tmp_path / f"shard-{i}.json") for i in range(3)]
    merged = subprocess.run(
        [sys.executable, "-m", "ws_counter.tools", "loadtest", "merge", *reports,
         "--json", str(tmp_path / "merged.json")],
        capture_output=True, text=True, timeout=seconds(60), check=False,
    )  # fmt: skip
    assert merged.returncode == 0, merged.stdout + merged.stderr
    report = json.loads((tmp_path / "merged.json").read_text())
    assert report["correct"] is True and report["clients_connected"] == 60
    assert report["increments_acked"] == 300 and len(report["counters"]) == 6
    assert report["expected_total"] == report["observed_total"]
    assert "CORRECT" in merged.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "ws_counter.tools", "loadtest", "merge", reports[0], reports[2]],
        capture_output=True, text=True, timeout=seconds(60), check=False,
    )  # fmt: skip
    assert missing.returncode == 2 and "missing [1]" in missing.stdout


def test_loadtest_fails_when_a_threshold_is_missed(cluster: LocalCluster) -> None:
    """An impossible fan-out threshold makes the run fail even though totals are exact."""
    result = run_loadtest(
        cluster.url,
        "--clients",
        "20",
        "--increments",
        "5",
        "--counter",
        "lt-threshold",
        "--max-p99-fanout-ms",
        "0.0001",
    )
    assert result.returncode == 1, result.stdout
    assert "CORRECT" in result.stdout and "FAILED" in result.stdout


def test_loadtest_detects_a_counter_that_lost_its_history(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """Deleting the counter in Redis mid-run: the load test reports the loss, exits non-zero."""
    counter = "lt-lossy"
    run = BackgroundLoadtest(
        cluster.url,
        *("--clients", "30", "--rate", "300", "--duration", "4", "--counter", counter),
        json_path=tmp_path / "report.json",
    )
    run.wait_until_acking()
    subprocess.run(
        ["redis-cli", "-p", str(cluster.redis_port), "DEL", state_key(counter)],
        check=True,
        capture_output=True,
        timeout=seconds(10),
    )
    status, report = run.finish()
    assert status == 1, run.output
    assert "INCORRECT" in run.output
    assert report is not None and report["correct"] is False
    assert any("history was lost" in error or "epoch" in error for error in report["errors"])


def test_loadtest_refuses_non_loopback_targets_when_asked() -> None:
    """--loopback-only refuses a target outside 127.0.0.0/8 before opening any connection."""
    result = run_loadtest("ws://192.0.2.1:8080/", "--clients", "1", "--increments", "1")
    assert result.returncode == 2
    assert "not a loopback address" in result.stdout


def test_interactive_client_prints_acks_and_pushed_totals(cluster: LocalCluster) -> None:
    """`ws-counter client` sends typed numbers, prints the acks, quits cleanly at end of input."""
    result = subprocess.run(
        [sys.executable, "-m", "ws_counter.tools", "client", cluster.url + "counters/client-test"],
        input="5\nabc\n-2\n",
        check=False,
        capture_output=True,
        text=True,
        timeout=seconds(60),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Number: " in result.stdout
    assert "acknowledged: total 5 (seq 1)" in result.stdout
    assert "not a whole number" in result.stdout
    assert "acknowledged: total 3 (seq 2)" in result.stdout
