"""The scenarios: increment throughput, fan-out latency and cost, idle memory."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram
from rich.console import Console

from tools.loadtest import LoadOptions, run_loadtest

from .contestants import Contestant
from .rawclients import run_clients
from .writers import WriterPlan, read_total, run_writers

CONTEXT = multiprocessing.get_context("spawn")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CLIENTS_PER_PROCESS = 2500
# How long clients may take to catch up after the last send before the rest counts
# as unreached.
CONVERGE_SECONDS = 30.0


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / CLOCK_TICKS


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def spawn(target: Callable[..., None], *args: Any) -> tuple[Any, Connection]:
    ours, theirs = CONTEXT.Pipe()
    process = CONTEXT.Process(target=target, args=(*args, theirs), daemon=True)
    process.start()
    theirs.close()
    return process, ours


def receive(pipe: Connection, timeout: float) -> Any:
    if not pipe.poll(timeout):
        raise TimeoutError(f"no answer from a load process in {timeout:g}s")
    return pipe.recv()


@dataclass
class Throughput:
    acked: int
    per_second: float
    exact: bool
    cpu_seconds: float


def throughput(
    contestant: Contestant,
    connections: int,
    seconds: float,
    window: int = 16,
    processes: int = 2,
    *,
    dedup: str = "id",
) -> Throughput:
    """Writers as fast as acks come back; the totals must add up."""
    before = asyncio.run(read_total(contestant.url))
    cpu0 = cpu_seconds(contestant.pids)
    plan = WriterPlan(contestant.url, connections // processes, seconds, window, dedup=dedup)
    runs = [spawn(run_writers, plan) for _ in range(processes)]
    results = [receive(pipe, seconds + 120) for _, pipe in runs]
    cpu = cpu_seconds(contestant.pids) - cpu0
    for process, _ in runs:
        process.join(10)
    acked = sum(r["acked"] for r in results)
    after = asyncio.run(read_total(contestant.url))
    return Throughput(
        acked, acked / seconds, after - before == sum(r["total_by"] for r in results), cpu
    )


@dataclass
class RedisMemory:
    dedup: str
    increments: int
    used_memory_growth: int
    bytes_per_increment: float
    keys_added: int
    exact: bool


def redis_memory(
    contestant: Contestant, redis_port: int, clients: int, increments: int, dedup: str
) -> RedisMemory:
    """What ``clients`` load-test clients sending ``increments`` each leave in Redis."""
    before_memory, before_keys = _redis_memory(redis_port)
    options = LoadOptions(
        url=contestant.url,
        clients=clients,
        increments=increments,
        counter=f"memory-{dedup}",
        processes=2,
        loopback_only=True,
        dedup=dedup,
    )
    report = run_loadtest(options, Console(quiet=True))
    after_memory, after_keys = _redis_memory(redis_port)
    growth = after_memory - before_memory
    acked = int(report["increments_acked"])
    return RedisMemory(
        dedup, acked, growth, growth / max(1, acked), after_keys - before_keys, report["correct"]
    )


def _redis_memory(port: int) -> tuple[int, int]:
    """Redis' used_memory and key count."""
    info = subprocess.run(
        ["redis-cli", "-p", str(port), "INFO"], capture_output=True, text=True, check=True
    ).stdout
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    keys = sum(
        int(value.split(",")[0].split("=")[1])
        for name, value in fields.items()
        if name.startswith("db")
    )
    return int(fields["used_memory"]), keys


@dataclass
class Fanout:
    clients: int
    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    frames: int
    cpu_seconds: float
    frames_per_cpu_second: float
    unreached: int
    exact: bool


def fanout(contestant: Contestant, clients: int, rate: float, seconds: float) -> Fanout:
    """Clients on raw sockets; increments at ``rate``; time until every client has each seq."""
    counts = [CLIENTS_PER_PROCESS] * (clients // CLIENTS_PER_PROCESS)
    if clients % CLIENTS_PER_PROCESS:
        counts.append(clients % CLIENTS_PER_PROCESS)
    url = contestant.url.removeprefix("ws://")
    host_port, _, path = url.partition("/")
    host, _, port = host_port.partition(":")
    holders = [spawn(run_clients, host, int(port), "/" + path, count) for count in counts]
    for _, pipe in holders:
        assert receive(pipe, 120)[0] == "open"
    cpu0 = cpu_seconds(contestant.pids)
    if contestant.floor is not None:
        sent_at = _drive_floor(contestant, rate, seconds)
        acked, exact = len(sent_at), True
    else:
        before = asyncio.run(read_total(contestant.url))
        process, pipe = spawn(run_writers, WriterPlan(contestant.url, 4, seconds, rate=rate))
        result = receive(pipe, seconds + 120)
        process.join(10)
        sent_at, acked = result["sent_at"], result["acked"]
        after_total = None
    last = max(sent_at, default=0)
    for _, pipe in holders:
        pipe.send(("until", last))
    reports = [_report(pipe, CONVERGE_SECONDS) for _, pipe in holders]
    cpu = cpu_seconds(contestant.pids) - cpu0
    for process, _ in holders:
        process.join(10)
    if contestant.floor is None:
        after_total = asyncio.run(read_total(contestant.url))
        exact = after_total - before == acked
    histogram = HdrHistogram(1, 60_000_000, 3)
    unreached = 0
    for seq, sent in sent_at.items():
        times = [report[1].get(seq) for report in reports]
        if any(t is None for t in times):
            unreached += 1
            continue
        histogram.record_value(max(1, int((max(times) - sent) * 1e6)))
    frames = sum(report[2] for report in reports)
    return Fanout(
        clients,
        rate,
        histogram.get_value_at_percentile(50) / 1000,
        histogram.get_value_at_percentile(99) / 1000,
        histogram.get_max_value() / 1000,
        frames,
        cpu,
        frames / cpu if cpu else 0.0,
        unreached,
        exact,
    )


def _report(pipe: Connection, timeout: float) -> Any:
    """A client process's report once its clients reached the last seq, or when told to
    stop after ``timeout``: a server that falls behind shows up as unreached seqs."""
    if not pipe.poll(timeout):
        pipe.send(("stop",))
    return receive(pipe, 60)


def _drive_floor(contestant: Contestant, rate: float, seconds: float) -> dict[int, float]:
    assert contestant.floor is not None
    sent_at: dict[int, float] = {}
    started = time.monotonic()
    for n in range(1, int(rate * seconds) + 1):
        due = started + n / rate
        # The schedule of sends is the thing being generated here.
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent_at[n] = time.monotonic()
        contestant.floor.write_line(str(n))
    return sent_at


def idle_memory(contestant: Contestant, clients: int) -> float:
    """KiB of server RSS per idle connection."""
    before = rss_kib(contestant.pids)
    url = contestant.url.removeprefix("ws://")
    host_port, _, path = url.partition("/")
    host, _, port = host_port.partition(":")
    process, pipe = spawn(run_clients, host, int(port), "/" + path, clients)
    assert receive(pipe, 120)[0] == "open"
    after = rss_kib(contestant.pids)
    pipe.send(("stop",))
    receive(pipe, 60)
    process.join(10)
    return (after - before) / clients
