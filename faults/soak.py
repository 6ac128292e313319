"""``python -m faults soak``: every Redis mode we ship, through idle and load, over time.

Each mode (one Redis, Sentinel, a 3-primary Redis Cluster) runs as real
processes on loopback (two workers behind HAProxy) through

    warm-up load, idle (at least 30 s), load, idle, load, idle

while every worker's ``/readyz`` is read every 0.1 s. A mode passes when:

* every readiness answer was 200;
* no worker logged an error (a failed task, an exception, a lost Redis);
* every load test was exact;
* worker RSS and worker open files (less their connections to Redis) grew
  under 5% from the end of the first idle to the end of the last
  (``MAX_GROWTH``), and so did what Redis holds for the workers: the live
  keys and their bytes (``MEMORY USAGE``) and the channels subscribed;
* the workers' connections to Redis stayed within their pools' bound, and the
  scripts Redis caches within theirs: each node caches a script on its first
  run there, which for the held-state flush may come after the first idle (one
  CI run saw 11 -> 13 over a Redis Cluster's nodes), but never more than the
  worker's scripts and the soak's own.

Redis' used_memory is those parts and what is bounded by design, so it is
reported but judged through its parts:

* a pool of connections to each Redis node opens as concurrency asks, up to
  REQUEST_CONNECTIONS (32) a node and worker, and Redis keeps a few KB for
  each (in one CI run, 26 more connections after a load were 124,608 B more
  used_memory, +9.1%);
* the warm-up, a load like the others, opens what a worker opens once (the
  first connections, the scripts Redis caches) before the first idle is
  measured;
* the workers keep sessions for WS_SESSION_TTL=5 s here (a day by default),
  so the sessions of one load are expired by the end of the idle after it;
  how much they take while kept is in docs/guarantees.md ("Redis memory of
  exactly-once");
* Redis' replication backlog fills up to repl-backlog-size (1 MiB a node by
  default) as writes flow.

Loads run at 200 increments/s over 20 counters, faster than a person types:
WS_RATE_LIMIT=0.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ws_counter.tools.cluster import ClusterOptions, LocalCluster
from ws_counter.tools.processes import free_port, rss_kib
from ws_counter.worker.store.connect import REQUEST_CONNECTIONS
from ws_counter.worker.store.scripts import script_names

MODES: dict[str, dict[str, Any]] = {
    "one-redis": {},
    "sentinel": {"sentinel": True},
    "redis-cluster": {"redis_cluster": 3},
}
MIN_FIRST_IDLE = 30.0
MIN_PHASE = 5.0
SAMPLE_EVERY = 0.1
MAX_GROWTH = 0.05
WORKERS = 2
WORKER_ENV = {"WS_RATE_LIMIT": "0", "WS_SESSION_TTL": "5"}


@dataclass(frozen=True)
class Phases:
    """How long each phase of one mode lasts (seconds)."""

    first_idle: float
    load: float
    idle: float

    @classmethod
    def within(cls, seconds: float) -> Phases:
        """The phases of a mode given ``seconds`` in all: the first idle takes 30 s or
        half, whichever is longer; two loads and two idles share the rest."""
        first = max(MIN_FIRST_IDLE, seconds / 2)
        rest = max(MIN_PHASE, (seconds - first) / 4)
        return cls(first, rest, rest)


# Live keys and their bytes, on the node that runs it; KEYS and MEMORY USAGE skip
# keys that have expired, even where Redis has not yet reclaimed them.
KEYSPACE_SCRIPT = (
    "local keys, bytes = 0, 0 "
    "for _, key in ipairs(redis.call('KEYS', '*')) do "
    "keys = keys + 1 "
    "bytes = bytes + (redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0') or 0) "
    "end "
    "return {keys, bytes}"
)


@dataclass
class Resources:
    """What one end of an idle phase measured; Redis' figures are summed over the data
    nodes (keys over the primaries)."""

    worker_rss_kib: int
    # Open files less the connections to Redis (those are bounded by the pools).
    worker_fds: int
    redis_keys: int
    redis_keyspace_bytes: int
    # Channels and shard channels with a subscriber.
    redis_channels: int
    redis_scripts: int
    # Reported, judged through the parts above: used_memory less the backlog.
    redis_memory_bytes: int = 0
    # Bounded by design: the backlog fills up to repl-backlog-size as writes flow;
    # at most REQUEST_CONNECTIONS per Redis node and worker, plus a subscriber.
    redis_backlog_bytes: int = 0
    # What Redis keeps for its clients' buffers: more while they were busy lately.
    redis_clients_bytes: int = 0
    worker_redis_connections: int = 0


# Judged against a bound (ModeResult.connections_bounded, scripts_bounded), not growth.
BOUNDED = ("worker_redis_connections", "redis_scripts")
JUDGED = (
    "worker_rss_kib",
    "worker_fds",
    "redis_keys",
    "redis_keyspace_bytes",
    "redis_channels",
)


@dataclass
class ModeResult:
    mode: str
    phases: Phases
    # The most connections to Redis the workers' pools may hold.
    connection_bound: int = 0
    # The most scripts the data nodes may cache: the worker's and the soak's, on each.
    script_bound: int = 0
    readiness: dict[str, int] = field(default_factory=dict)  # status -> answers
    errors: list[str] = field(default_factory=list)
    loads_exact: list[bool] = field(default_factory=list)
    idles: list[Resources] = field(default_factory=list)

    def growth(self) -> dict[str, float]:
        first, last = asdict(self.idles[0]), asdict(self.idles[-1])
        return {name: (last[name] - first[name]) / max(first[name], 1) for name in JUDGED}

    @property
    def connections_bounded(self) -> bool:
        return all(idle.worker_redis_connections <= self.connection_bound for idle in self.idles)

    @property
    def scripts_bounded(self) -> bool:
        return all(idle.redis_scripts <= self.script_bound for idle in self.idles)

    @property
    def not_ready(self) -> int:
        return sum(count for status, count in self.readiness.items() if status != "200")

    @property
    def passed(self) -> bool:
        flat = all(growth < MAX_GROWTH for growth in self.growth().values())
        return (
            self.not_ready == 0
            and not self.errors
            and bool(self.loads_exact)
            and all(self.loads_exact)
            and flat
            and self.connections_bounded
            and self.scripts_bounded
        )


class ReadinessSampler:
    """Reads every worker's /readyz every SAMPLE_EVERY seconds on a thread of its own."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.answers: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="readyz", daemon=True)

    def __enter__(self) -> ReadinessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        connections = {
            port: http.client.HTTPConnection("127.0.0.1", port, timeout=1) for port in self.ports
        }
        # The stop event's wait is the sampling clock.
        while not self._stop.wait(SAMPLE_EVERY):
            for port, connection in connections.items():
                self.answers[self._ask(connection)] += 1
                del port

    @staticmethod
    def _ask(connection: http.client.HTTPConnection) -> str:
        try:
            connection.request("GET", "/readyz")
            response = connection.getresponse()
            response.read()
            return str(response.status)
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            return type(exc).__name__


def measure(cluster: LocalCluster) -> Resources:
    pids = [worker.pid for worker in cluster.workers]
    rss = rss_kib(pids)
    fds = sum(len(list(Path(f"/proc/{pid}/fd").iterdir())) for pid in pids)
    ports = redis_ports(cluster)
    to_redis = connections_to(ports, set(pids))
    redis = RedisHolding()
    for port in ports:
        redis.add(port)
    return Resources(
        rss, fds - to_redis, redis.keys, redis.keyspace_bytes, redis.channels, redis.scripts,
        redis.memory_bytes, redis.backlog_bytes, redis.clients_bytes, to_redis,
    )  # fmt: skip


def connections_to(ports: list[int], pids: set[int]) -> int:
    """Established TCP connections from ``pids`` to any of ``ports`` (from ss)."""
    table = subprocess.run(
        ["ss", "-Htnp", "state", "established"],
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout  # fmt: skip
    wanted = {f":{port}" for port in ports}
    count = 0
    for line in table.splitlines():
        columns = line.split()
        if len(columns) < 5:
            continue
        peer, users = columns[3], " ".join(columns[4:])
        if peer[peer.rfind(":") :] in wanted and any(f"pid={pid}," in users for pid in pids):
            count += 1
    return count


def redis_ports(cluster: LocalCluster) -> list[int]:
    """Every data node's port."""
    if cluster.redis_cluster is not None:
        return list(cluster.redis_cluster.nodes)
    if cluster.sentinels is not None:
        return list(cluster.sentinels.ports.values())
    return [cluster.redis_port]


def field_of(text: str, name: str) -> str:
    """What follows ``name`` on its line of ``text`` (/proc status, Redis INFO)."""
    line = next(line for line in text.splitlines() if line.startswith(name))
    return line[len(name) :].strip()


@dataclass
class RedisHolding:
    """What the data nodes hold, summed as each is added."""

    keys: int = 0
    keyspace_bytes: int = 0
    channels: int = 0
    scripts: int = 0
    memory_bytes: int = 0
    backlog_bytes: int = 0
    clients_bytes: int = 0

    def add(self, port: int) -> None:
        # A replica holds its primary's keys; a Redis Cluster replica would refuse to
        # read them. Before INFO: the script is cached by its first run, and counted.
        if "role:master" in redis_cli(port, "INFO", "replication"):
            keys, keyspace_bytes = redis_cli(port, "EVAL_RO", KEYSPACE_SCRIPT, "0").split()
            self.keys += int(keys)
            self.keyspace_bytes += int(keyspace_bytes)
        info = redis_cli(port, "INFO", "memory")
        backlog = int(field_of(info, "mem_replication_backlog:"))
        self.memory_bytes += int(field_of(info, "used_memory:")) - backlog
        self.backlog_bytes += backlog
        self.clients_bytes += int(field_of(info, "mem_clients_normal:"))
        self.scripts += int(field_of(info, "number_of_cached_scripts:"))
        for listing in ("CHANNELS", "SHARDCHANNELS"):
            self.channels += len(redis_cli(port, "PUBSUB", listing).split())


def redis_cli(port: int, *command: str) -> str:
    return subprocess.run(
        ["redis-cli", "-p", str(port), *command],
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout  # fmt: skip


def run_load(cluster: LocalCluster, seconds: float, out: Path) -> bool:
    """A load test of ``seconds`` at 200 increments/s over 20 counters: exact or not."""
    report_path = out / f"load-{time.monotonic_ns()}.json"
    subprocess.run(
        [sys.executable, "-m", "ws_counter.tools", "loadtest", cluster.url, "--loopback-only",
         "--clients", "100", "--counters", "20", "--counter", "soak",
         "--rate", "200", "--duration", f"{seconds:g}", "--json", str(report_path)],
        capture_output=True, text=True, timeout=seconds + 180, check=False,
    )  # fmt: skip
    if not report_path.exists():
        return False
    report = json.loads(report_path.read_text())
    return bool(report["correct"]) and report["increments_acked"] == report["increments_sent"]


def logged_errors(log_dir: Path) -> list[str]:
    """Every error a worker logged: a failed task, an exception, a lost Redis."""
    found = []
    for path in sorted(log_dir.glob("worker-*.log")):
        for line in path.read_text().splitlines():
            if '"level": "error"' in line or "Traceback" in line or '"event": "redis_lost"' in line:
                found.append(f"{path.name}: {line[:300]}")
    return found


def soak_mode(mode: str, phases: Phases, out: Path) -> ModeResult:
    log_dir = out / mode
    options = ClusterOptions(
        workers=WORKERS,
        port=free_port(),
        worker_env=WORKER_ENV,
        log_dir=log_dir,
        **MODES[mode],
    )
    with LocalCluster(options) as cluster, ReadinessSampler(cluster.worker_ports) as sampler:
        nodes = len(redis_ports(cluster))
        result = ModeResult(
            mode,
            phases,
            connection_bound=WORKERS * (REQUEST_CONNECTIONS + 1) * nodes,
            script_bound=(len(script_names()) + 1) * nodes,  # + 1: KEYSPACE_SCRIPT
        )
        result.loads_exact.append(run_load(cluster, phases.load, log_dir))
        time.sleep(phases.first_idle)  # idle is the phase: time passing, nothing to wait on
        result.idles.append(measure(cluster))
        for _ in range(2):
            result.loads_exact.append(run_load(cluster, phases.load, log_dir))
            time.sleep(phases.idle)
            result.idles.append(measure(cluster))
    result.readiness = dict(sampler.answers)
    result.errors = logged_errors(log_dir)
    return result


def soak(minutes: float, out: Path, modes: list[str] | None = None) -> list[ModeResult]:
    chosen = modes or list(MODES)
    phases = Phases.within(minutes * 60 / len(chosen))
    results = []
    for mode in chosen:
        result = soak_mode(mode, phases, out)
        print_result(result)
        results.append(result)
    (out / "soak.json").write_text(
        json.dumps(
            [{**asdict(r), "growth": r.growth(), "passed": r.passed} for r in results], indent=2
        )
    )
    return results


def _unjudged(name: str) -> str:
    """Why a figure's growth is not judged: it has a bound instead, or it is reported only."""
    return "judged by its bound" if name in BOUNDED else "not judged"


def print_result(result: ModeResult) -> None:
    first, last = asdict(result.idles[0]), asdict(result.idles[-1])
    growth = result.growth()
    changes = "\n".join(
        f"    {name}: {first[name]} -> {last[name]}"
        + (f" ({growth[name]:+.1%})" if name in growth else f" ({_unjudged(name)})")
        for name in first
    )
    print(
        f"{result.mode}: {'PASS' if result.passed else 'FAIL'}"
        f" (idle {result.phases.first_idle:g} s, then load/idle {result.phases.load:g} s x2)\n"
        f"  readiness samples: {sum(result.readiness.values())}, not 200: {result.not_ready}"
        f" {dict(result.readiness)}\n"
        f"  loads exact: {result.loads_exact}\n"
        f"  errors logged: {len(result.errors)}\n"
        f"  worker connections to Redis within {result.connection_bound}:"
        f" {result.connections_bounded}\n"
        f"  scripts cached within {result.script_bound}: {result.scripts_bounded}\n"
        f"  first idle -> last idle:\n{changes}",
        flush=True,
    )
    for line in result.errors[:10]:
        print(f"    {line}", flush=True)
