"""python -m bench: ws-counter beside its alternatives and the machine's limits.

    python -m bench                               the standard run (about 20 minutes on 2 cores)
    python -m bench --clients 10000 --rates 1000  other sizes
    python -m bench --quick                       a short smoke run: every contestant, small sizes

Everything runs in one invocation on one machine so that the ratios compare
like with like. Results: a table on standard output, bench/results/latest.json,
bench/results/latest.md and bench/results/fanout.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ws_counter.worker.limits import raise_open_file_limit
from ws_counter.worker.store.scripts import script

from . import contestants
from .churn import measure as measure_churn
from .churn import print_churn
from .counters import QUICK_ROWS, ROWS, rows_on_one_redis
from .hot import run_hot
from .httpwriters import run_http_writers
from .measure import fanout, idle_memory, many_counters, redis_memory, throughput
from .report import render_markdown, render_plot
from .tls import measure_tls, print_tls

RESULTS = Path(__file__).parent / "results"

Plan = dict[str, Any]
MEASUREMENTS = (
    "idle",
    "throughput",
    "http",
    "memory",
    "fanout",
    "cluster",
    "counters",
    "hot",
    "churn",
    "tls",
)
FLOOR = "raw-socket floor"

FULL: Plan = {
    "throughput_seconds": 4.0,
    "writers": 50,
    # Kept-alive HTTP connections, one request at a time each.
    "http_connections": 200,
    "clients": [1000, 5000],
    "rates": [100, 1000],
    "fanout_seconds": 3.0,
    "idle_clients": 2000,
    # 200,000 increments from 100 load-test clients, once with sessions, once with ids.
    "memory_clients": 100,
    "memory_increments": 2000,
    # One Redis against a 3-primary Redis Cluster, each behind one worker.
    "cluster_counters": 1000,
    "cluster_clients": 2000,
    "cluster_increments": 20,
    # Distinct counters, increments in flight (python -m bench.counters).
    "spread_rows": ROWS,
    "spread_seconds": 8.0,
    # A hot counter with 63 stand-in workers (python -m bench.hot), and churn.
    "hot_seconds": 5.0,
    "churn_rate": 2000.0,
    "churn_seconds": 5.0,
    # Plain and TLS in alternation, this many times each (python -m bench.tls).
    "tls_rounds": 2,
}
QUICK: Plan = {
    "throughput_seconds": 1.5,
    "writers": 10,
    "http_connections": 20,
    "clients": [200],
    "rates": [100],
    "fanout_seconds": 1.5,
    "idle_clients": 200,
    "memory_clients": 20,
    "memory_increments": 50,
    "cluster_counters": 50,
    "cluster_clients": 100,
    "cluster_increments": 5,
    "spread_rows": QUICK_ROWS,
    "spread_seconds": 2.0,
    "hot_seconds": 1.5,
    "churn_rate": 300.0,
    "churn_seconds": 2.0,
    "tls_rounds": 1,
}


def machine() -> dict[str, Any]:
    versions = {}
    for name, label in (
        ("websockets", "websockets"),
        ("redis", "redis-py"),
        ("uvloop", "uvloop"),
        ("hiredis", "hiredis"),
    ):
        try:
            versions[label] = getattr(__import__(name), "__version__", "?")
        except ImportError:
            versions[label] = "missing"
    redis = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "redis-server": next((word for word in redis if word.startswith("v=")), "?"),
        **versions,
    }


def redis_floor(port: int, clients: int, pipeline: int, requests: int) -> float:
    """redis-benchmark running ws-counter's increment script itself."""
    source = script("increment").source
    sha = subprocess.run(
        ["redis-cli", "-p", str(port), "SCRIPT", "LOAD", source],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    output = subprocess.run(
        [
            "redis-benchmark",
            "-p",
            str(port),
            "-c",
            str(clients),
            "-n",
            str(requests),
            "-P",
            str(pipeline),
            "-q",
            "EVALSHA",
            sha,
            "1",
            "wsc:{floor}",
            # publish, fresh epoch, id and session lifetimes, W, publish interval;
            # then one counter: its channel, one key, one bare increment of 1.
            "PUBLISH",
            "e",
            "60",
            "86400",
            "64",
            "0",
            "wsc:{floor}:updates",
            "1",
            "1",
            "1",
            "",
            "",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # "EVALSHA ...: 91324.20 requests per second, p50=0.271 msec"
    match = re.search(r"([\d.]+) requests per second", output)
    if match is None:
        raise RuntimeError(f"unexpected redis-benchmark output: {output!r}")
    return float(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--clients", type=_numbers, help="fan-out client counts, e.g. 1000,5000")
    parser.add_argument("--rates", type=_numbers, help="increments per second, e.g. 100,1000")
    parser.add_argument(
        "--only", help="comma-separated server names to run (default: all)", default=""
    )
    parser.add_argument(
        "--measure",
        default=",".join(MEASUREMENTS),
        help=f"what to measure, comma-separated from {', '.join(MEASUREMENTS)} (default: all)",
    )
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a variable for every ws-counter worker the run starts,"
        " e.g. WS_SEND_BUFFER_BYTES=4096",
    )
    args = parser.parse_args(argv)
    plan = dict(QUICK if args.quick else FULL)
    plan["clients"] = args.clients or plan["clients"]
    plan["rates"] = args.rates or plan["rates"]
    plan["only"] = [name.strip() for name in args.only.split(",") if name.strip()]
    plan["worker_env"] = dict(item.split("=", 1) for item in args.worker_env)
    contestants.set_run_worker_env(plan["worker_env"])
    plan["measure"] = [part.strip() for part in args.measure.split(",") if part.strip()]
    warning = raise_open_file_limit(max(plan["clients"]) * 2 + 1000)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    results: dict[str, Any] = {
        "machine": machine(),
        "plan": plan,
        "quick": args.quick,
        "throughput": [],
        "fanout": [],
        "idle_kib": {},
        "redis_memory": [],
        "many_counters": [],
        "spread": [],
        "hot": [],
        "churn": [],
        "tls": [],
        "floors": {},
        "failures": [],
    }
    with tempfile.TemporaryDirectory(prefix="ws-counter-bench-") as scratch:
        run_all(plan, Path(scratch), results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=2))
    markdown = render_markdown(results)
    (args.out / "latest.md").write_text(markdown)
    render_plot(results, args.out / "fanout.png")
    print(markdown)
    exact = all(
        r["exact"]
        for r in results["throughput"]
        + results["fanout"]
        + results["redis_memory"]
        + results["many_counters"]
        + results["hot"]
        + results["tls"]
    )
    print("totals exact in every run" if exact else "TOTALS WRONG in some run")
    for failure in results["failures"]:
        print(f"failed: {failure}")
    return 0 if exact and not results["failures"] else 1


def attempt(
    results: dict[str, Any], server: str, what: str, run: Callable[..., Any], *args: Any
) -> Any:
    """Run one measurement; a failure is recorded and reported, and the run goes on."""
    try:
        return run(*args)
    except Exception as exc:  # a contestant that breaks down is a result too
        results["failures"].append(f"{server}: {what}: {type(exc).__name__}: {exc}")
        print(f"   {what} FAILED: {exc}", flush=True)
        return None


def _numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


Start = Callable[[int], contestants.Contestant]


def measure_sessions(
    plan: Plan, results: dict[str, Any], name: str, server: contestants.Contestant, port: int
) -> None:
    """ws-counter's session path beside its id path: throughput, then what Redis keeps."""
    measured = "throughput" in plan["measure"] and attempt(
        results,
        name,
        "throughput with sessions",
        lambda: throughput(server, plan["writers"], plan["throughput_seconds"], dedup="session"),
    )
    if measured:
        results["throughput"].append({"server": name, "dedup": "session", **asdict(measured)})
        print(f"   throughput with sessions {measured.per_second:,.0f}/s exact={measured.exact}")
    if name == "ws-counter x1" and "http" in plan["measure"]:
        measure_http(plan, results, name, server)
    if name != "ws-counter x1" or "memory" not in plan["measure"]:
        return
    clients, increments = plan["memory_clients"], plan["memory_increments"]
    for dedup in ("session", "id"):
        memory = attempt(
            results,
            name,
            f"Redis memory ({dedup})",
            redis_memory,
            server,
            port,
            clients,
            increments,
            dedup,
        )
        if memory is not None:
            results["redis_memory"].append(asdict(memory))
            print(
                f"   Redis memory, {dedup}: {memory.bytes_per_increment:.1f} B per increment,"
                f" {memory.keys_added} keys added, exact={memory.exact}"
            )


def measure_http(
    plan: Plan, results: dict[str, Any], name: str, server: contestants.Contestant
) -> None:
    """Increments by the HTTP API (sessions, kept-alive connections) through the same worker."""
    measured = attempt(
        results,
        name,
        "HTTP API throughput",
        lambda: throughput(
            server,
            plan["http_connections"],
            plan["throughput_seconds"],
            dedup="session",
            writers=run_http_writers,
        ),
    )
    if measured:
        results["throughput"].append({"server": name, "dedup": "http", **asdict(measured)})
        print(
            f"   HTTP API {measured.per_second:,.0f}/s over {plan['http_connections']} connections"
            f" exact={measured.exact} (load generator busy {measured.generator_busy:.0%})"
        )


def compare_redis_cluster(plan: Plan, scratch: Path, results: dict[str, Any]) -> None:
    """One worker on one Redis, then one worker on a 3-primary Redis Cluster: the same load
    over many counters. On one machine this shows the cluster's cost, not a speed-up."""
    sizes = (plan["cluster_counters"], plan["cluster_clients"], plan["cluster_increments"])
    with (
        contestants.one_redis(scratch / "redis-single") as port,
        contestants.ws_counter(port, 1) as server,
    ):
        print("== ws-counter x1 on one Redis, many counters", flush=True)
        one = attempt(
            results, "one Redis", "many counters", many_counters, server, "one Redis", *sizes
        )
    cluster = contestants.start_redis_cluster(scratch / "redis-cluster")
    try:
        with contestants.ws_counter(None, 1, REDIS_CLUSTER_NODES=cluster.seeds) as server:
            print("== ws-counter x1 on a 3-primary Redis Cluster, many counters", flush=True)
            sharded = attempt(
                results,
                "Redis Cluster",
                "many counters",
                many_counters,
                server,
                "Redis Cluster (3 primaries)",
                *sizes,
            )
    finally:
        cluster.stop()
    for row in (one, sharded):
        if row is not None:
            results["many_counters"].append(asdict(row))
            print(
                f"   {row.redis}: {row.increments_per_second:,.0f} incr/s, fan-out p99"
                f" {row.fanout_p99_ms:.1f} ms, exact={row.exact}"
            )


def measure_spread(plan: Plan, scratch: Path, results: dict[str, Any]) -> None:
    """Distinct counters with increments in flight, one worker, one Redis: the ratios to
    the first row, and every answer that was not an ack."""
    print("== ws-counter x1, distinct counters, increments in flight", flush=True)
    rows = attempt(
        results,
        "ws-counter x1",
        "distinct counters",
        rows_on_one_redis,
        scratch,
        plan["spread_rows"],
        plan["spread_seconds"],
    )
    for row in rows or []:
        results["spread"].append(asdict(row))
        if row.error_codes:
            results["failures"].append(
                f"distinct counters: {row.counters:,} counters answered {row.error_codes}"
            )


def measure_scale(plan: Plan, scratch: Path, results: dict[str, Any]) -> None:
    """Many distinct counters, a hot counter watched by many workers, and churn."""
    if "counters" in plan["measure"]:
        measure_spread(plan, scratch, results)
    if "hot" in plan["measure"]:
        print("== ws-counter x1, a hot counter with 63 stand-in workers", flush=True)
        rows = attempt(
            results, "ws-counter x1", "hot counter", run_hot, [0, 25], plan["hot_seconds"], scratch
        )
        results["hot"] = [asdict(row) for row in rows or []]
    if "churn" in plan["measure"]:
        print("== ws-counter x1, clients joining and leaving distinct counters", flush=True)
        churn = attempt(
            results,
            "ws-counter x1",
            "churn",
            measure_churn,
            plan["churn_rate"],
            plan["churn_seconds"],
            scratch,
        )
        if churn is not None:
            print_churn(churn)
            results["churn"].append(asdict(churn))
            if churn.channels_after_grace > churn.channels_before:
                results["failures"].append(f"churn: subscriptions leaked: {churn}")
    if "tls" in plan["measure"]:
        print("== ws-counter x1, the cost of TLS on each hop", flush=True)
        costs = attempt(
            results,
            "ws-counter x1",
            "TLS",
            measure_tls,
            plan["writers"],
            plan["throughput_seconds"],
            plan["tls_rounds"],
            scratch,
        )
        if costs is not None:
            print_tls(costs)
            results["tls"] = [asdict(cost) for cost in costs]


def run_all(plan: dict[str, Any], scratch: Path, results: dict[str, Any]) -> None:  # noqa: PLR0912 (one branch per measurement the run may include)
    servers: list[tuple[str, Start]] = [
        ("ws-counter x1", lambda port: contestants.ws_counter(port, 1)),
        ("ws-counter x2", lambda port: contestants.ws_counter(port, 2)),
        ("naive (await each)", lambda port: contestants.naive(port, "await")),
        ("naive + broadcast()", lambda port: contestants.naive(port, "broadcast")),
        ("broadcaster+starlette", contestants.peer),
    ]
    if plan["only"]:
        servers = [(name, start) for name, start in servers if name in plan["only"]]
    for index, (name, start) in enumerate(servers):
        with contestants.one_redis(scratch / f"redis-{index}") as port, start(port) as server:
            print(f"== {name}", flush=True)
            # Idle memory first, on a fresh server: later runs leave freed memory
            # in the allocator that new connections would reuse unseen.
            if "idle" in plan["measure"]:
                idle = attempt(
                    results, name, "idle memory", idle_memory, server, plan["idle_clients"]
                )
                if idle is not None:
                    results["idle_kib"][name] = idle
            measured = "throughput" in plan["measure"] and attempt(
                results,
                name,
                "throughput",
                throughput,
                server,
                plan["writers"],
                plan["throughput_seconds"],
            )
            if measured:
                results["throughput"].append({"server": name, "dedup": "id", **asdict(measured)})
                print(f"   throughput {measured.per_second:,.0f}/s exact={measured.exact}")
            if name.startswith("ws-counter"):
                measure_sessions(plan, results, name, server, port)
            for clients in plan["clients"] if "fanout" in plan["measure"] else []:
                for rate in plan["rates"]:
                    one = attempt(
                        results,
                        name,
                        f"fan-out {clients}/{rate}",
                        fanout,
                        server,
                        clients,
                        rate,
                        plan["fanout_seconds"],
                    )
                    if one is not None:
                        results["fanout"].append({"server": name, **asdict(one)})
                        print(
                            f"   fan-out C={clients} R={rate}: p50 {one.p50_ms:.1f} ms "
                            f"p99 {one.p99_ms:.1f} ms, {one.frames_per_cpu_second:,.0f} "
                            "frames/CPU-s",
                            flush=True,
                        )
    if "cluster" in plan["measure"]:
        compare_redis_cluster(plan, scratch, results)
    measure_scale(plan, scratch, results)
    if "fanout" in plan["measure"] and (not plan["only"] or FLOOR in plan["only"]):
        floor = contestants.floor()
        try:
            print(f"== {FLOOR}", flush=True)
            for clients in plan["clients"]:
                for rate in plan["rates"]:
                    one = fanout(floor, clients, rate, plan["fanout_seconds"])
                    results["fanout"].append({"server": FLOOR, **asdict(one)})
        finally:
            floor.stop()
    if "throughput" not in plan["measure"]:
        return
    redis, port = contestants.start_redis(scratch / "redis-floor")
    try:
        requests = 20000 if plan["throughput_seconds"] < 2 else 200000
        results["floors"]["redis_lua_per_s_50_clients"] = redis_floor(port, 50, 1, requests)
        results["floors"]["redis_lua_per_s_50_clients_pipelined"] = redis_floor(
            port, 50, 16, requests * 4
        )
    finally:
        redis.stop()


if __name__ == "__main__":
    raise SystemExit(main())
