"""Connections follow capacity: workers added under load take their share of the clients.

The workers share one port (SO_REUSEPORT, as `ws-counter cluster --no-haproxy` runs them),
so each worker's connections are counted from the kernel's socket table (`ss`).
"""

from __future__ import annotations

import asyncio
import re
import statistics
import subprocess
import time
from pathlib import Path

import pytest

from ws_counter.tools.cluster import ClusterOptions, LocalCluster
from ws_counter.tools.processes import free_port
from ws_counter.worker.settings import load_settings
from ws_counter.worker.store import RedisStore
from ws_counter.worker.store.fleet import report_connections
from ws_counter.worker.store.keys import FLEET_COUNTER, FLEET_KEY
from ws_counter.worker.store.scripts import script

from .conftest import RedisServer, seconds
from .loadrun import BackgroundLoadtest


def test_the_fleet_is_reported_and_read_in_one_step_and_the_gone_are_dropped(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> tuple[dict[str, int], dict[str, int], list[object]]:
        store = RedisStore(load_settings({"REDIS_URL": redis_server.url}))
        try:
            await report_connections(store, "gone", 9)
            both = await report_connections(store, "here", 5)
            await asyncio.sleep(0.05)
            # A report older than 10 ms is a worker gone: dropped from the hash too.
            (reply,) = await store.run_script(
                FLEET_COUNTER, script("fleet"), [FLEET_KEY], ["here", 6, 10]
            )
            after = await report_connections(store, "here", 7)
            return both, after, reply
        finally:
            await store.close()

    both, after, _ = asyncio.run(scenario())
    assert both == {"gone": 9, "here": 5}
    assert after == {"here": 7}
    assert redis_server.cli("HKEYS", FLEET_KEY).split() == ["here"]
    assert 0 < int(redis_server.cli("TTL", FLEET_KEY)) <= 60


def connections_by_pid(port: int) -> dict[int, int]:
    """Established connections to ``port``, by the pid that holds them."""
    table = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( sport = :{port} )"],
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout  # fmt: skip
    counts: dict[int, int] = {}
    for pid in re.findall(r"pid=(\d+)", table):
        counts[int(pid)] = counts.get(int(pid), 0) + 1
    return counts


@pytest.mark.cluster
@pytest.mark.slow
def test_doubling_the_workers_under_load_evens_out_their_connections(tmp_path: Path) -> None:
    """300 clients on 2 workers, then 2 more: within 2 minutes every worker holds within 20%
    of the mean, with the default WS_REBALANCE_RATE, and the load test stays exact."""
    port = free_port()
    options = ClusterOptions(
        workers=2, port=port, haproxy=False, worker_env={"WS_RATE_LIMIT": "0"}, log_dir=tmp_path
    )
    with LocalCluster(options) as cluster:
        run = BackgroundLoadtest(
            cluster.url,
            *("--clients", "300", "--counters", "10", "--counter", "rebalanced"),
            *("--rate", "100", "--duration", "120", "--converge-timeout", "30"),
            json_path=tmp_path / "report.json",
        )
        run.wait_until_acking()
        cluster.add_worker()
        cluster.add_worker()
        pids = [worker.pid for worker in cluster.workers]
        added = time.monotonic()
        spread: list[int] = []
        balanced_after = None
        while time.monotonic() - added < seconds(120):
            counts = connections_by_pid(port)
            spread = [counts.get(pid, 0) for pid in pids]
            mean = statistics.mean(spread)
            if mean and all(abs(count - mean) <= 0.2 * mean for count in spread):
                balanced_after = time.monotonic() - added
                break
            time.sleep(1.0)  # the kernel's table is read, not waited on
        status, report = run.finish(timeout=240)
        logs = "\n".join(line for worker in cluster.workers for line in worker.output())
    assert balanced_after is not None, f"not balanced in 2 minutes: {spread}"
    print(f"balanced after {balanced_after:.0f} s: {spread}")
    assert status == 0 and report is not None and report["correct"] is True, run.output
    assert report["increments_acked"] == report["increments_sent"]
    assert report["reconnects"] > 0
    assert '"event": "rebalancing"' in logs
