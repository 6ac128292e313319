"""``python -m bench.scale``: capacity against workers and Redis primaries, in one run.

For each number of workers (1, 2, 4, 8, up to the cores there are), sharing one
port, in one sitting on one machine:

* **one counter**: 256 writers, 16 increments in flight each, one Redis;
* **2,000 counters**: 2,000 writers (sessions), 2 in flight each, on one Redis
  and on a 3-primary Redis Cluster;
* **fan-out**: 20,000 lean clients on one counter (10,000 where one worker
  could not hold them: its open-file limit) at 20 and at 200 increments/s:
  frames delivered per second and p99 from send to every client;
* the workers' CPU per increment and per frame, and the busiest Redis
  process's share of a core (where it nears 100%, Redis is the limit).

The load generator must not be the limit: every figure comes with the busiest
load process's share of a core and is marked ``load-bound`` where that share
went over 70%. Sends far faster than a person types: the workers run with
WS_RATE_LIMIT=0. Results: a table, bench/results/scale.json and
bench/results/scale.png (capacity against workers, with the ideal line).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .contestants import Contestant, start_redis, start_redis_cluster, ws_counter
from .measure import SpreadLoad, cpu_seconds, fanout, spread, throughput
from .report import pyplot, save_figure

RESULTS = Path(__file__).parent / "results"
# A load process busier than this (of one core) may be the limit, not the workers.
LOAD_BOUND = 0.7
# Connections a worker needs beyond its clients: Redis, the listening socket, logs.
SPARE_FILES = 200


@dataclass
class Plan:
    workers: list[int]
    seconds: float
    clients: int
    counters: int
    rates: list[float]
    one_counter_writers: int = 256
    load_processes: int = 2
    cluster: bool = True
    fanout: bool = True


@dataclass
class Row:
    """One measurement: what, where, how much, and what it cost the workers."""

    measure: str
    redis: str
    workers: int
    per_second: float
    worker_cpu_s: float
    generator_busy: float
    exact: bool
    clients: int = 0
    rate: float = 0.0
    p99_ms: float = 0.0
    frames: int = 0
    errors: str = ""
    # The busiest Redis process's share of a core through the measurement.
    redis_busy: float = 0.0

    @property
    def load_bound(self) -> bool:
        return self.generator_busy > LOAD_BOUND

    def cpu_us_per_unit(self, seconds: float) -> float:
        """Worker CPU per increment (per frame for fan-out), in microseconds."""
        units = self.frames if self.measure == "fan-out" else self.per_second * seconds
        return self.worker_cpu_s / units * 1e6 if units else 0.0


def fanout_clients(plan: Plan, workers: int) -> int:
    """The plan's clients, halved until each worker's share fits its open-file limit."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if limit == resource.RLIM_INFINITY:
        return plan.clients
    clients = plan.clients
    while clients // workers + SPARE_FILES > limit and clients > 1:
        clients //= 2
    return clients


class RedisBusy:
    """The busiest of ``pids``' share of a core from enter to exit: Redis' load."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.busiest = 0.0

    def __enter__(self) -> RedisBusy:
        self._before = {pid: cpu_seconds([pid]) for pid in self.pids}
        self._started = time.monotonic()
        return self

    def __exit__(self, *exc_info: object) -> None:
        wall = max(time.monotonic() - self._started, 1e-6)
        used = [cpu_seconds([pid]) - before for pid, before in self._before.items()]
        self.busiest = round(max(used, default=0.0) / wall, 2)


def one_counter_row(plan: Plan, server: Contestant, redis: list[int], dedup: str) -> Row:
    with RedisBusy(redis) as busy:
        hot = throughput(
            server,
            plan.one_counter_writers,
            plan.seconds,
            window=16,
            processes=plan.load_processes,
            dedup=dedup,
        )
    name = "one counter" if dedup == "session" else f"one counter ({dedup}s)"
    workers = len(server.children)
    return Row(
        name, "one Redis", workers, hot.per_second, hot.cpu_seconds, hot.generator_busy,
        hot.exact, redis_busy=busy.busiest,
    )  # fmt: skip


def on_one_redis(plan: Plan, workers: int, scratch: Path) -> list[Row]:
    redis, port = start_redis(scratch / f"redis-{workers}")
    try:
        with ws_counter(port, workers) as server:
            rows = [
                one_counter_row(plan, server, [redis.pid], dedup) for dedup in ("session", "id")
            ]
            rows.append(spread_row(plan, server, "one Redis", workers, [redis.pid]))
            if plan.fanout:
                rows += fanout_rows(plan, server, workers, [redis.pid])
    finally:
        redis.stop()
    return rows


def fanout_rows(plan: Plan, server: Contestant, workers: int, redis: list[int]) -> list[Row]:
    rows = []
    clients = fanout_clients(plan, workers)
    for rate in plan.rates:
        with RedisBusy(redis) as busy:
            out = fanout(server, clients, rate, plan.seconds)
        rows.append(
            Row("fan-out", "one Redis", workers, out.frames / plan.seconds, out.cpu_seconds,
                out.generator_busy, out.exact and not out.unreached, clients, rate,
                out.p99_ms, out.frames, f"{out.unreached} unreached" if out.unreached else "",
                busy.busiest)
        )  # fmt: skip
    return rows


def spread_row(plan: Plan, server: Contestant, redis: str, workers: int, pids: list[int]) -> Row:
    load = SpreadLoad(plan.counters, plan.counters, 2, plan.seconds, plan.load_processes, "session")
    with RedisBusy(pids) as busy:
        out = spread(server, redis, load)
    errors = ", ".join(f"{code}: {n}" for code, n in out.error_codes.items())
    return Row(
        f"{plan.counters:,} counters", redis, workers, out.per_second, out.cpu_seconds,
        out.generator_busy, not out.error_codes, errors=errors, redis_busy=busy.busiest,
    )  # fmt: skip


def on_redis_cluster(plan: Plan, workers: int, scratch: Path) -> Row:
    cluster = start_redis_cluster(scratch / f"cluster-{workers}")
    try:
        with ws_counter(None, workers, REDIS_CLUSTER_NODES=cluster.seeds) as server:
            pids = [node.pid for node in cluster.nodes.values()]
            return spread_row(plan, server, "Redis Cluster (3 primaries)", workers, pids)
    finally:
        cluster.stop()


def run(plan: Plan, scratch: Path) -> list[Row]:
    rows: list[Row] = []
    for workers in plan.workers:
        print(f"== {workers} worker(s)", flush=True)
        found = on_one_redis(plan, workers, scratch)
        if plan.cluster:
            found.append(on_redis_cluster(plan, workers, scratch))
        for row in found:
            print("   " + describe(row, plan.seconds), flush=True)
        rows += found
    return rows


def describe(row: Row, seconds: float) -> str:
    unit = "frames" if row.measure == "fan-out" else "incr"
    what = (
        f"{row.measure} ({row.clients:,} clients at {row.rate:g}/s)" if row.clients else row.measure
    )
    figure = f"{row.per_second:,.0f} {unit}/s"
    if row.measure == "fan-out":
        figure += f", p99 {row.p99_ms:,.0f} ms"
    bound = "  LOAD-BOUND" if row.load_bound else ""
    return (
        f"{row.redis:>27} x{row.workers} {what:<42} {figure:<32}"
        f" worker {row.cpu_us_per_unit(seconds):5.1f} us/{unit[:-1] if unit == 'frames' else unit}"
        f"  busiest load process {row.generator_busy:.0%}{bound}"
        f"  busiest Redis {row.redis_busy:.0%}"
        f"{'  NOT EXACT' if not row.exact else ''}{'  ' + row.errors if row.errors else ''}"
    )


def ratios(rows: list[Row]) -> dict[str, float]:
    """The figures the targets name, each a ratio within this run."""

    def figure(measure: str, redis: str, workers: int, rate: float = 0.0) -> Row | None:
        return next(
            (
                r
                for r in rows
                if (r.measure, r.redis, r.workers, r.rate) == (measure, redis, workers, rate)
            ),
            None,
        )

    most = max(r.workers for r in rows)
    least = min(r.workers for r in rows)
    found: dict[str, float] = {}
    one, many = figure("one counter", "one Redis", least), figure("one counter", "one Redis", most)
    if one and many and one.per_second:
        found[f"one counter: x{most} / x{least}"] = many.per_second / one.per_second
    spread_name = next((r.measure for r in rows if r.measure.endswith("counters")), "")
    single = figure(spread_name, "one Redis", most)
    sharded = figure(spread_name, "Redis Cluster (3 primaries)", most)
    if single and sharded and single.per_second:
        found[f"{spread_name} at x{most}: Redis Cluster / one Redis"] = (
            sharded.per_second / single.per_second
        )
    for row in rows:
        if row.measure == "fan-out" and row.workers == most:
            found[f"fan-out p99 ms, {row.clients:,} clients at {row.rate:g}/s, x{most}"] = (
                row.p99_ms
            )
    return found


def plot(rows: list[Row], path: Path) -> None:
    plt = pyplot()
    if plt is None:
        print("no matplotlib: no plot", flush=True)
        return
    figure, axis = plt.subplots(figsize=(8, 5))
    series = sorted({(r.measure, r.redis) for r in rows if r.measure != "fan-out"})
    for measure, redis in series:
        mine = sorted(
            (r for r in rows if (r.measure, r.redis) == (measure, redis)), key=lambda r: r.workers
        )
        workers = [r.workers for r in mine]
        line = axis.plot(
            workers, [r.per_second for r in mine], marker="o", label=f"{measure}, {redis}"
        )
        ideal = [mine[0].per_second * w / mine[0].workers for w in workers]
        axis.plot(workers, ideal, linestyle=":", color=line[0].get_color(), alpha=0.6)
        for row in mine:
            if row.load_bound:
                axis.annotate("load-bound", (row.workers, row.per_second), fontsize=7)
    axis.set_title("capacity against workers (dotted: ideal, from the fewest workers)")
    save_figure(plt, figure, axis, path, ("workers", "acknowledged increments per second"))


def worker_counts(text: str | None) -> list[int]:
    cores = os.cpu_count() or 2
    if text:
        return [int(part) for part in text.split(",")]
    return [n for n in (1, 2, 4, 8) if n <= max(1, cores // 2)] or [1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workers", help="comma-separated counts (1,2,4,8 up to half the cores)")
    parser.add_argument("--seconds", type=float, default=8.0, help="each measurement (8)")
    parser.add_argument("--clients", type=int, default=20_000, help="fan-out clients (20000)")
    parser.add_argument("--counters", type=int, default=2_000, help="distinct counters (2000)")
    parser.add_argument("--rates", default="20,200", help="fan-out increments/s (20,200)")
    parser.add_argument(
        "--load-processes", type=int, help="writer processes (a quarter of the cores)"
    )
    parser.add_argument("--no-cluster", action="store_true", help="leave out the Redis Cluster")
    parser.add_argument("--no-fanout", action="store_true", help="leave out the fan-out rows")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small sizes")
    parser.add_argument("--out", type=Path, default=RESULTS, help="for scale.json and scale.png")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 2
    plan = Plan(
        workers=worker_counts(args.workers),
        seconds=2.0 if args.quick else args.seconds,
        clients=200 if args.quick else args.clients,
        counters=100 if args.quick else args.counters,
        rates=[float(rate) for rate in args.rates.split(",")],
        one_counter_writers=32 if args.quick else 256,
        load_processes=args.load_processes or max(2, cores // 4),
        cluster=not args.no_cluster,
        fanout=not args.no_fanout,
    )
    scratch = Path(tempfile.mkdtemp(prefix="ws-counter-bench-scale-"))
    rows = run(plan, scratch)
    found = ratios(rows)
    print("\nratios in this run:")
    for name, value in found.items():
        print(f"  {name}: {value:,.2f}")
    bound = [describe(r, plan.seconds) for r in rows if r.load_bound]
    if bound:
        print(f"\n{len(bound)} figure(s) load-bound: the load generator was the limit there")
    args.out.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "plan": asdict(plan),
        "cores": cores,
        "rows": [
            {
                **asdict(r),
                "load_bound": r.load_bound,
                "cpu_us_per_unit": r.cpu_us_per_unit(plan.seconds),
            }
            for r in rows
        ],
        "ratios": found,
    }
    (args.out / "scale.json").write_text(json.dumps(document, indent=2) + "\n")
    plot(rows, args.out / "scale.png")
    print(f"results in {args.out / 'scale.json'}", flush=True)
    return 0 if all(r.exact for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
