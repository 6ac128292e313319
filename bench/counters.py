"""``python -m bench.counters``: many counters against one, on one worker, in one sitting.

Writers keep increments in flight (not one awaited at a time) over distinct
counters; every row runs against the same worker and Redis, so the ratios to
the first row are the figures to trust on a shared machine. Any answer other
than an ack is counted by its code; the target is none. The benchmark sends far
faster than a person types: the worker runs with WS_RATE_LIMIT=0.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from .contestants import Contestant, one_redis, start_redis_cluster, ws_counter
from .measure import Spread, SpreadLoad, spread

# (connections, counters, increments in flight per connection)
ROWS = [(50, 50, 16), (1000, 1000, 4), (2000, 2000, 2), (10000, 10000, 1)]
QUICK_ROWS = [(50, 50, 16), (1000, 1000, 4)]


def run_rows(
    contestant: Contestant, redis: str, rows: list[tuple[int, int, int]], seconds: float
) -> list[Spread]:
    results = []
    for connections, counters, window in rows:
        row = spread(contestant, redis, SpreadLoad(connections, counters, window, seconds))
        results.append(row)
        base = results[0].per_second or 1
        print(
            f"{redis:>13} {connections:>6} conns {counters:>6} counters x{window:<2}"
            f" {row.per_second:>8,}/s  {row.per_second / base:4.2f}x of the first row"
            f"  errors {row.error_codes or 'none'}  worker cpu {row.cpu_seconds} s"
            f"  busiest writer {row.generator_busy:.0%}",
            flush=True,
        )
    return results


def rows_on_worker(
    redis_port: int | None,
    env: dict[str, str],
    redis: str,
    rows: list[tuple[int, int, int]],
    seconds: float,
) -> list[Spread]:
    """``rows`` against one worker started for them (``env``: more of its settings)."""
    with ws_counter(redis_port, 1, **env) as contestant:
        return run_rows(contestant, redis, rows, seconds)


def rows_on_one_redis(
    scratch: Path, rows: list[tuple[int, int, int]], seconds: float
) -> list[Spread]:
    """``rows`` against one worker on a Redis of their own."""
    with one_redis(scratch / "redis-spread") as port:
        return rows_on_worker(port, {}, "one Redis", rows, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.counters", description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0, help="each row's length (8)")
    parser.add_argument("--quick", action="store_true", help="two small rows")
    parser.add_argument("--cluster", action="store_true", help="also on a 3-primary cluster")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    rows = QUICK_ROWS if args.quick else ROWS
    directory = Path(tempfile.mkdtemp(prefix="ws-counter-bench-counters-"))
    results = rows_on_one_redis(directory, rows, args.seconds)
    if args.cluster:
        cluster = start_redis_cluster(directory / "cluster")
        try:
            env = {"REDIS_CLUSTER_NODES": cluster.seeds}
            results += rows_on_worker(None, env, "Redis Cluster", rows, args.seconds)
        finally:
            cluster.stop()
    if args.json:
        args.json.write_text(json.dumps([asdict(row) for row in results], indent=2))
    return 0 if all(not row.error_codes for row in results) else 1


if __name__ == "__main__":
    sys.exit(main())
