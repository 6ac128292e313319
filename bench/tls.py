"""The cost of TLS on each hop, in acknowledged increments per second, in one run.

    python -m bench.tls [--seconds 4] [--writers 50] [--rounds 2]

* clients to HAProxy: one worker behind HAProxy, plain ws:// against wss://
  (HAProxy ends TLS; Redis plain in both);
* worker to Redis: one worker straight to Redis, plain against TLS with the
  least-privilege ACL user (tools/redissecurity.py).

Each pair runs in alternation, ``rounds`` times, and the ratio is of the sums:
drift of a shared machine falls on both sides alike. Writers send with
sessions, as fast as acks come back (WS_RATE_LIMIT=0: far faster than a
person types). The writers trust the throwaway CA through SSL_CERT_FILE, which
Python's default TLS context reads.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ws_counter.tools.cluster import ClusterOptions, LocalCluster
from ws_counter.tools.processes import free_port
from ws_counter.tools.redissecurity import RedisSecurity
from ws_counter.tools.redisserver import start_redis_server

from .contestants import NO_PERSISTENCE, Contestant, one_redis, run_worker_env, ws_counter
from .measure import Throughput, throughput

NO_RATE_LIMIT = {"WS_RATE_LIMIT": "0"}


@dataclass
class TlsCost:
    hop: str
    plain_per_second: float
    tls_per_second: float
    ratio: float
    exact: bool
    generator_busy: float


Run = Callable[[bool], Throughput]


def measure_tls(writers: int, seconds: float, rounds: int, scratch: Path) -> list[TlsCost]:
    """Both hops' costs; ``ratio`` is TLS over plain (1.0: free)."""

    def clients(tls: bool) -> Throughput:
        with _behind_haproxy(tls, scratch) as contestant:
            return throughput(contestant, writers, seconds, dedup="session")

    def redis(tls: bool) -> Throughput:
        with _straight_to_redis(tls, scratch) as contestant:
            return throughput(contestant, writers, seconds, dedup="session")

    return [
        _compare("clients to HAProxy", clients, rounds),
        _compare("worker to Redis", redis, rounds),
    ]


def _compare(hop: str, run: Run, rounds: int) -> TlsCost:
    plain: list[Throughput] = []
    tls: list[Throughput] = []
    for _ in range(rounds):
        plain.append(run(False))
        tls.append(run(True))
    plain_rate = sum(r.per_second for r in plain) / rounds
    tls_rate = sum(r.per_second for r in tls) / rounds
    return TlsCost(
        hop,
        round(plain_rate),
        round(tls_rate),
        round(tls_rate / plain_rate, 3) if plain_rate else 0.0,
        all(r.exact for r in plain + tls),
        max(r.generator_busy for r in plain + tls),
    )


@contextlib.contextmanager
def _behind_haproxy(tls: bool, scratch: Path) -> Iterator[Contestant]:
    options = ClusterOptions(
        workers=1, port=free_port(), haproxy=True, tls=tls, redis_tls=False,
        worker_env=run_worker_env() | NO_RATE_LIMIT,
        log_dir=scratch / f"haproxy-{'tls' if tls else 'plain'}",
    )  # fmt: skip
    with LocalCluster(options) as cluster, _trusting(cluster.ca_file):
        children = [*cluster.workers, *([cluster.haproxy] if cluster.haproxy else [])]
        yield Contestant(f"ws-counter x1 behind HAProxy{' (TLS)' if tls else ''}", cluster.url,
                         children)  # fmt: skip


@contextlib.contextmanager
def _straight_to_redis(tls: bool, scratch: Path) -> Iterator[Contestant]:
    directory = Path(tempfile.mkdtemp(dir=scratch))
    # ws_counter() turns the rate limit off itself.
    settings: dict[str, str] = {}
    if tls:
        security = RedisSecurity(directory / "tls")
        port = free_port()
        redis = start_redis_server(
            port, directory / "redis", NO_PERSISTENCE, extra=security.server_args(port)
        )
        settings |= security.worker_env()
        try:
            with ws_counter(port, 1, **settings) as server:
                yield server
        finally:
            redis.stop()
    else:
        with one_redis(directory / "redis") as port, ws_counter(port, 1, **settings) as server:
            yield server


@contextlib.contextmanager
def _trusting(ca_file: Path | None) -> Iterator[None]:
    """SSL_CERT_FILE names ``ca_file`` here and in the writer processes spawned meanwhile."""
    previous = os.environ.get("SSL_CERT_FILE")
    if ca_file is not None:
        os.environ["SSL_CERT_FILE"] = str(ca_file)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = previous


def print_tls(costs: list[TlsCost]) -> None:
    for cost in costs:
        print(
            f"   {cost.hop}: plain {cost.plain_per_second:,.0f}/s,"
            f" TLS {cost.tls_per_second:,.0f}/s, ratio {cost.ratio:.2f} exact={cost.exact}"
            f" (load generator busy {cost.generator_busy:.0%})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tls",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="each throughput run")
    parser.add_argument("--writers", type=int, default=50, help="writer connections")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of plain and TLS")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ws-counter-bench-tls-") as scratch:
        costs = measure_tls(args.writers, args.seconds, args.rounds, Path(scratch))
    print_tls(costs)
    print([asdict(cost) for cost in costs])
    return 0 if all(cost.exact for cost in costs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
