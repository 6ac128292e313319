"""python -m bench.profile: where one worker spends its CPU, by py-spy, under a chosen load.

    python -m bench.profile throughput        writers as fast as acks allow
    python -m bench.profile fanout 1000 1000  1,000 clients, 1,000 increments per second
    python -m bench.profile http --writers 200  increments by the HTTP API, as fast as answered
    python -m bench.profile counters 2000 2     2,000 counters, 2 increments in flight on each
    python -m bench.profile churn 0 2000        2,000 joins per second, each to a new counter

It starts Redis and one worker (rate limit off: the load sends faster than a
person types), samples the worker with ``py-spy record`` while the load runs,
and prints the functions with the most samples, own and inclusive.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from .churn import churn_on, print_churn
from .contestants import start_redis, ws_counter
from .httpwriters import run_http_writers
from .measure import SpreadLoad, fanout, spread, throughput
from .writers import run_writers

TOP = 30


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("load", choices=("throughput", "fanout", "http", "counters", "churn"))
    parser.add_argument("clients", type=int, nargs="?", default=1000)
    parser.add_argument("rate", type=float, nargs="?", default=1000.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--writers", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("bench/results/profile.txt"))
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with tempfile.TemporaryDirectory(prefix="ws-counter-profile-") as scratch:
        redis, port = start_redis(Path(scratch) / "redis")
        server = ws_counter(port, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        try:
            record = subprocess.Popen(
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(server.pids[0]),
                    "--format",
                    "raw",
                    "--rate",
                    "200",
                    "--output",
                    str(args.out),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if args.load in ("throughput", "http"):
                http = args.load == "http"
                result = throughput(
                    server,
                    args.writers,
                    args.seconds,
                    dedup="session" if http else "id",
                    writers=run_http_writers if http else run_writers,
                )
                print(f"{args.load} {result.per_second:,.0f}/s exact={result.exact}")
            elif args.load == "counters":
                # clients = counters, one writer connection each; rate = in flight on each.
                load = SpreadLoad(args.clients, args.clients, int(args.rate), args.seconds)
                row = spread(server, "one Redis", load)
                print(f"counters {row.per_second:,}/s errors {row.error_codes or 'none'}")
            elif args.load == "churn":
                # rate = joins per second; clients is not used (each join is a new client).
                print_churn(churn_on(server, port, args.rate, args.seconds))
            else:
                one = fanout(server, args.clients, args.rate, args.seconds)
                frames = one.frames_per_cpu_second
                print(f"fan-out p99 {one.p99_ms:.1f} ms, {frames:,.0f} frames/CPU-s")
            record.send_signal(signal.SIGINT)
            record.wait(60)
        finally:
            server.stop()
            redis.stop()
    print_top(args.out)
    return 0


def print_top(path: Path) -> None:
    """The collapsed stacks py-spy wrote, summed per function: own samples and inclusive."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [_function(frame) for frame in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    print(f"{total} samples\n\nown time:")
    for frame, count in own.most_common(TOP):
        print(f"  {count / total:6.1%}  {frame}")
    print("\ninclusive:")
    for frame, count in inclusive.most_common(TOP):
        print(f"  {count / total:6.1%}  {frame}")


def _function(frame: str) -> str:
    """``name (path/to/file.py:12)`` as ``name file.py``."""
    name, _, where = frame.partition(" (")
    return f"{name} {where.split(':')[0].rsplit('/', 1)[-1]}"


if __name__ == "__main__":
    raise SystemExit(main())
