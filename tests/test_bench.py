"""The benchmark in its short smoke mode: it runs, every contestant answers, totals are exact.

Figures are printed by the benchmark, never asserted: a shared machine makes
timings unreliable, and `python -m bench` is where they are judged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .checkout import run_checked
from .deploy import ROOT

pytestmark = pytest.mark.bench


def run_from_the_checkout(
    argv: list[str], timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a benchmark command from the repository root."""
    return run_checked(argv, ROOT, timeout, env)


def test_benchmark_smoke_run_completes_with_exact_totals(tmp_path: Path) -> None:
    run_from_the_checkout([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)], 600)
    results = json.loads((tmp_path / "latest.json").read_text())
    servers = {row["server"] for row in results["fanout"]}
    assert servers == {
        "ws-counter x1",
        "ws-counter x2",
        "naive (await each)",
        "naive + broadcast()",
        "broadcaster+starlette",
        "raw-socket floor",
    }
    assert all(row["exact"] and row["unreached"] == 0 for row in results["fanout"])
    assert all(row["exact"] and row["acked"] > 0 for row in results["throughput"])
    assert results["floors"]["redis_lua_per_s_50_clients"] > 0
    dedups = {(row["server"], row["dedup"]) for row in results["throughput"]}
    assert {("ws-counter x1", "session"), ("ws-counter x1", "id")} <= dedups
    many = {row["redis"]: row for row in results["many_counters"]}
    assert set(many) == {"one Redis", "Redis Cluster (3 primaries)"}
    assert all(row["exact"] and row["increments_per_second"] > 0 for row in many.values())
    assert all(row["rss_kib"] for row in results["fanout"]), "RSS is sampled through each run"
    assert (tmp_path / "rss.png").stat().st_size > 0
    memory = {row["dedup"]: row for row in results["redis_memory"]}
    assert set(memory) == {"session", "id"} and all(row["exact"] for row in memory.values())
    clients = results["plan"]["memory_clients"]
    # A session leaves one key per client; an id leaves one per increment.
    assert memory["session"]["keys_added"] <= clients + 1
    assert memory["id"]["keys_added"] >= memory["id"]["increments"]
    assert (tmp_path / "latest.md").read_text().startswith("## Machine")
    assert (tmp_path / "fanout.png").stat().st_size > 0


def test_the_scale_benchmark_smoke_run_is_exact(tmp_path: Path) -> None:
    """python -m bench.scale at small sizes, through the big-machine script as the 16-core
    run used it: every row exact, every measure present, each with its load's busyness."""
    run_from_the_checkout(
        ["bash", "bench/big-machine.sh", "--quick", "--workers", "1,2", "--seconds", "2"],
        600,
        env={**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable},
    )
    document = json.loads((tmp_path / "scale.json").read_text())
    rows = document["rows"]
    assert {(row["measure"], row["redis"]) for row in rows} == {
        ("one counter", "one Redis"),
        ("one counter (ids)", "one Redis"),
        ("100 counters", "one Redis"),
        ("100 counters", "Redis Cluster (3 primaries)"),
        ("fan-out", "one Redis"),
    }
    assert {row["workers"] for row in rows} == {1, 2}
    assert all(row["exact"] and row["per_second"] > 0 for row in rows), rows
    assert all(row["generator_busy"] > 0 for row in rows)
    assert "one counter: x2 / x1" in document["ratios"]
    assert (tmp_path / "scale.png").stat().st_size > 10_000


@pytest.mark.parametrize("receiver", ["here", "process"])
def test_the_write_path_benchmark_prints_both_loops(receiver: str) -> None:
    """python -m bench.writepath at small sizes: a row per loop, each with both costs,
    with the receivers in the sender's process and in a reader process of their own."""
    sizes = ["--connections", "20", "--rounds", "3", "--send-buffer", "4096"]
    result = run_from_the_checkout(
        [sys.executable, "-m", "bench.writepath", *sizes, "--receiver", receiver], 60
    )
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| ")]
    costs = {cells[0].strip(): [float(cells[1]), float(cells[2])] for cells in rows[1:]}
    assert set(costs) == {"uvloop", "asyncio"}
    assert all(cost > 0 for pair in costs.values() for cost in pair), costs


def test_the_builds_benchmark_runs_pure_and_compiled_side_by_side() -> None:
    """python -m bench.builds at the smallest size: one round of each build, every row
    measured on both, the compiled one checked to run compiled."""
    quick = ["--quick", "--only", "ws-counter x1", "--measure", "throughput"]
    result = run_from_the_checkout(
        [sys.executable, "-m", "bench.builds", "--rounds", "1", "--", *quick], 900
    )
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| row |"))
    assert header.split("|")[2:4] == [" pure 1 ", " compiled 1 "]
    rows = [line.split("|")[1:-1] for line in lines if line.startswith("| acked/s")]
    assert {row[0].strip() for row in rows} == {
        "acked/s, ws-counter x1 (id)",
        "acked/s, ws-counter x1 (session)",
    }
    assert all(float(cell.replace(",", "")) > 0 for row in rows for cell in row[1:]), rows
