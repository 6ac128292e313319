"""``python -m bench.churn``: clients joining and leaving distinct counters on one worker.

Each client opens a WebSocket to a counter no other client uses, waits for the
snapshot (its first total), and leaves at once; new clients start at a steady
rate from two load processes. Reported: joins per second reached, the time
from the open handshake's end until the snapshot arrived (p50, p99), and the
Redis channels subscribed before, at the end, and once the worker's
unsubscribe grace has passed: back at the baseline means no subscription leaked.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from ws_counter.worker import runtime
from ws_counter.worker.store.pubsub import UNSUBSCRIBE_GRACE
from ws_counter_client.urls import counter_url

from .contestants import Contestant, one_redis, ws_counter
from .measure import busy_fraction, cpu_seconds, receive, spawn

PROCESSES = 2


@dataclass
class Churn:
    joins: int
    joins_per_second: float
    failures: int
    snapshot_p50_ms: float
    snapshot_p99_ms: float
    channels_before: int
    channels_at_end: int
    channels_after_grace: int
    worker_busy: float
    generator_busy: float
    failure_kinds: dict[str, int]


def run_joiners(url: str, prefix: str, rate: float, seconds: float, pipe: Connection) -> None:
    pipe.send(runtime.run(_joiners(url, prefix, rate, seconds)))


async def _joiners(url: str, prefix: str, rate: float, seconds: float) -> dict[str, Any]:
    waits: list[float] = []
    failures: collections.Counter[str] = collections.Counter()

    async def one(number: int) -> None:
        try:
            async with connect(counter_url(url, f"{prefix}{number}"), compression=None) as ws:
                opened = time.monotonic()
                await asyncio.wait_for(ws.recv(), 10)
                waits.append(time.monotonic() - opened)
        except (OSError, TimeoutError, WebSocketException) as exc:  # counted, not raised
            failures[str(exc)[:60] or type(exc).__name__] += 1

    started = time.monotonic()
    tasks = []
    count = int(rate * seconds)
    for number in range(count):
        # Start on schedule: the n-th join is due at n / rate seconds.
        delay = started + number / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(number)))
    await asyncio.gather(*tasks)
    return {"waits": waits, "failures": dict(failures), "wall": time.monotonic() - started}


async def _channels(port: int) -> int:
    client = aioredis.Redis(port=port)
    try:
        return len(await client.pubsub_channels("wsc:*"))
    finally:
        await client.aclose()


def measure(rate: float, seconds: float, scratch: Path) -> Churn:
    with one_redis(scratch / "redis-churn") as port, ws_counter(port, 1) as server:
        return churn_on(server, port, rate, seconds)


def churn_on(server: Contestant, port: int, rate: float, seconds: float) -> Churn:
    """Joins at ``rate`` for ``seconds`` on ``server``, whose Redis listens on ``port``."""
    before = asyncio.run(_channels(port))
    cpu0 = cpu_seconds(server.pids)
    started = time.monotonic()
    runs = [
        spawn(run_joiners, server.url, f"churn{index}-", rate / PROCESSES, seconds)
        for index in range(PROCESSES)
    ]
    results = [receive(pipe, seconds + 120) for _, pipe in runs]
    elapsed = time.monotonic() - started
    worker_busy = (cpu_seconds(server.pids) - cpu0) / elapsed
    # Read before joining: an exited process keeps its CPU times until it is reaped.
    generator_busy = max(busy_fraction(process.pid, 0.0, elapsed) for process, _ in runs)
    for process, _ in runs:
        process.join(10)
    at_end = asyncio.run(_channels(port))
    # The grace is a timer in the worker; nothing to wait on from here but time.
    time.sleep(UNSUBSCRIBE_GRACE + 1.0)
    after = asyncio.run(_channels(port))
    waits = sorted(wait for result in results for wait in result["waits"])
    wall = max(result["wall"] for result in results)
    joins = len(waits)
    kinds: collections.Counter[str] = collections.Counter()
    for result in results:
        kinds.update(result["failures"])
    return Churn(
        joins,
        round(joins / wall),
        sum(kinds.values()),
        round(statistics.median(waits) * 1000, 1) if waits else 0.0,
        round(waits[int(len(waits) * 0.99) - 1] * 1000, 1) if waits else 0.0,
        before,
        at_end,
        after,
        round(worker_busy, 2),
        round(generator_busy, 2),
        dict(kinds),
    )


def print_churn(row: Churn) -> None:
    print(
        f"{row.joins:,} joins, {row.joins_per_second:,.0f}/s, {row.failures} failed;"
        f" snapshot p50 {row.snapshot_p50_ms} ms p99 {row.snapshot_p99_ms} ms;"
        f" Redis channels {row.channels_before} before, {row.channels_at_end} at the end,"
        f" {row.channels_after_grace} after the grace; worker {row.worker_busy:.0%} of a core,"
        f" busiest load process {row.generator_busy:.0%}"
        + (f"; failures {row.failure_kinds}" if row.failure_kinds else ""),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.churn", description=__doc__)
    parser.add_argument("--rate", type=float, default=2000.0, help="joins per second (2000)")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long (5)")
    parser.add_argument("--json", type=Path, help="write the row here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ws-counter-bench-churn-") as scratch:
        row = measure(args.rate, args.seconds, Path(scratch))
    print_churn(row)
    if args.json:
        args.json.write_text(json.dumps(asdict(row), indent=2))
    leaked = row.channels_after_grace > row.channels_before
    return 1 if leaked or row.failures else 0


if __name__ == "__main__":
    sys.exit(main())
