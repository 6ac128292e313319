"""The scenarios: increment throughput, fan-out latency and cost, idle memory."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram
from rich.console import Console

from ws_counter.tools.loadtest import LoadOptions, run_loadtest
from ws_counter.tools.processes import rss_kib

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


class RssSampler:
    """Samples the server's RSS every ``interval`` seconds on a thread, until stopped."""

    def __init__(self, pids: list[int], interval: float = 0.1) -> None:
        self.pids = pids
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        # The stop event is the wait: it ends the sampling at once when set.
        while True:
            self.samples.append((time.monotonic() - self._started, rss_kib(self.pids)))
            if self._stop.wait(self.interval):
                return

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_kib(self) -> int:
        rss = [kib for _, kib in self.samples]
        return max(rss) - rss[0] if rss else 0


def busy_fraction(pid: int, cpu_before: float, wall_seconds: float) -> float:
    """How much of one core a load process used: near 1.0, it, not the server, was the limit."""
    return (cpu_seconds([pid]) - cpu_before) / wall_seconds if wall_seconds else 0.0


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


def run_writer_processes(
    contestant: Contestant,
    writers: Callable[[WriterPlan, Connection], None],
    plans: list[WriterPlan],
    seconds: float,
) -> tuple[list[dict[str, Any]], float, float]:
    """Each plan in a load process of its own, until all report: their results, the
    server's CPU seconds meanwhile and the busiest load process's share of a core."""
    cpu0 = cpu_seconds(contestant.pids)
    started = time.monotonic()
    runs = [spawn(writers, plan) for plan in plans]
    results = [receive(pipe, seconds + 120) for _, pipe in runs]
    wall = time.monotonic() - started
    cpu = cpu_seconds(contestant.pids) - cpu0
    # Read before joining: an exited process keeps its CPU times until it is reaped.
    busy = max(busy_fraction(process.pid, 0.0, wall) for process, _ in runs)
    for process, _ in runs:
        process.join(10)
    return results, cpu, busy


@dataclass
class Throughput:
    acked: int
    per_second: float
    exact: bool
    cpu_seconds: float
    generator_busy: float
    rss_growth_kib: int
    rss_kib: list[tuple[float, int]]


def throughput(
    contestant: Contestant,
    connections: int,
    seconds: float,
    window: int = 16,
    processes: int = 2,
    *,
    dedup: str = "id",
    writers: Callable[[WriterPlan, Connection], None] = run_writers,
) -> Throughput:
    """Writers as fast as acks come back (``run_writers`` on WebSockets, or
    ``run_http_writers`` by the HTTP API); the totals must add up."""
    before = asyncio.run(read_total(contestant.url))
    plan = WriterPlan(contestant.url, connections // processes, seconds, window, dedup=dedup)
    with RssSampler(contestant.pids) as rss:
        results, cpu, busy = run_writer_processes(contestant, writers, [plan] * processes, seconds)
    acked = sum(r["acked"] for r in results)
    after = asyncio.run(read_total(contestant.url))
    # Every acknowledged increment once; one never answered may have been applied or not.
    applied = sum(r["total_by"] for r in results)
    exact = applied <= after - before <= applied + sum(r["unanswered"] for r in results)
    return Throughput(
        acked, acked / seconds, exact, cpu, round(busy, 2), rss.growth_kib, rss.samples
    )


@dataclass
class Spread:
    """Writers spread over distinct counters, increments kept in flight."""

    redis: str
    connections: int
    counters: int
    window: int
    acked: int
    per_second: float
    error_codes: dict[str, int]
    cpu_seconds: float
    generator_busy: float


@dataclass(frozen=True)
class SpreadLoad:
    """``connections`` writers over ``counters`` distinct counters, ``window`` increments in
    flight each, for ``seconds``, from ``processes`` load processes."""

    connections: int
    counters: int
    window: int
    seconds: float
    processes: int = 2
    dedup: str = "id"


def spread(contestant: Contestant, redis: str, load: SpreadLoad) -> Spread:
    """The writers of ``load`` (each process its own share of the counters)."""
    connections, counters, window, seconds = (
        load.connections,
        load.counters,
        load.window,
        load.seconds,
    )
    processes = load.processes
    share = max(1, counters // processes)
    plans = [
        WriterPlan(
            contestant.url,
            connections // processes,
            seconds,
            window,
            counters=share,
            first=index * share,
            prefix=f"spread{counters}-",
            dedup=load.dedup,
        )
        for index in range(processes)
    ]
    results, cpu, busy = run_writer_processes(contestant, run_writers, plans, seconds)
    acked = sum(r["acked"] for r in results)
    codes: dict[str, int] = {}
    for result in results:
        for code, count in result["error_codes"].items():
            codes[code] = codes.get(code, 0) + count
    return Spread(
        redis,
        connections,
        counters,
        window,
        acked,
        round(acked / seconds),
        codes,
        round(cpu, 1),
        round(busy, 2),
    )


@dataclass
class ManyCounters:
    redis: str
    counters: int
    clients: int
    increments_per_second: float
    fanout_p99_ms: float
    exact: bool


def many_counters(
    contestant: Contestant, redis: str, counters: int, clients: int, increments: int
) -> ManyCounters:
    """Load-test clients spread over ``counters`` counters, each increment awaited."""
    options = LoadOptions(
        url=contestant.url,
        clients=clients,
        increments=increments,
        counter="many",
        counters=counters,
        processes=2,
        loopback_only=True,
    )
    report = run_loadtest(options, Console(quiet=True))
    return ManyCounters(
        redis,
        counters,
        clients,
        float(report["throughput"]["increments_per_s"]),
        float(report["fanout_ms"]["p99"]),
        bool(report["correct"]),
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
    # The busiest load-generator process's share of a core, writers and readers.
    generator_busy: float
    rss_growth_kib: int
    rss_kib: list[tuple[float, int]]


# Increments come from many people, each at a human pace: one writer connection per
# this many increments per second. A few connections sending thousands per second
# each would be held back by the worker's per-connection window of unacknowledged
# increments (WS_MAX_PENDING_INCREMENTS), which is there against exactly that.
INCREMENTS_PER_WRITER = 50


def writer_connections(rate: float) -> int:
    return max(4, int(rate // INCREMENTS_PER_WRITER))


def fanout(contestant: Contestant, clients: int, rate: float, seconds: float) -> Fanout:
    """Clients on raw sockets; increments at ``rate``; time from each increment's send
    until every client holds its seq or a later one."""
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
    generator_cpu0 = {process.pid: cpu_seconds([process.pid]) for process, _ in holders}
    started = time.monotonic()
    writer = None
    with RssSampler(contestant.pids) as rss:
        if contestant.floor is not None:
            sent_at = _drive_floor(contestant, rate, seconds)
            acked, exact = len(sent_at), True
        else:
            before = asyncio.run(read_total(contestant.url))
            plan = WriterPlan(contestant.url, writer_connections(rate), seconds, rate=rate)
            writer, pipe = spawn(run_writers, plan)
            generator_cpu0[writer.pid] = 0.0
            result = receive(pipe, seconds + 120)
            sent_at, acked = result["sent_at"], result["acked"]
        last = max(sent_at, default=0)
        for _, pipe in holders:
            pipe.send(("until", last))
        reports = [_report(pipe, CONVERGE_SECONDS) for _, pipe in holders]
    wall = time.monotonic() - started
    cpu = cpu_seconds(contestant.pids) - cpu0
    # Read before joining: an exited process keeps its CPU times until it is reaped.
    busy = max(busy_fraction(pid, before, wall) for pid, before in generator_cpu0.items())
    for process, _ in holders:
        process.join(10)
    if writer is not None:
        writer.join(10)
    if contestant.floor is None:
        exact = asyncio.run(read_total(contestant.url)) - before == acked
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
        round(busy, 2),
        rss.growth_kib,
        rss.samples,
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
