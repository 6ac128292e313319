"""Deployments under test, each process on a host of its own in a ``net.Lab``.

* ``single``: one Redis with AOF (fsync always), two workers.
* ``cluster``: a Redis Cluster of three primaries with ``replicas`` replicas
  each (node timeout 2 s), two workers.
* ``sentinel``: a primary, ``replicas`` replicas and three Sentinels (quorum 2,
  down-after 2 s), two workers. Workers wait for ``REDIS_REPLICA_ACKS``
  replicas (1 unless the scenario says). Redis runs with
  ``min-replicas-to-write 1`` and ``min-replicas-max-lag`` as shipped, so a
  primary cut off from its replicas stops taking writes.

Workers run with the rate limit off (``WS_RATE_LIMIT=0``): the suite's clients
send faster than a person types.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ws_counter.tools.processes import Child
from ws_counter.tools.rediscluster import CLUSTER_OPTIONS, NODE_TIMEOUT_MS
from ws_counter.tools.redisserver import (
    REDIS_OPTIONS,
    REDIS_REPLICA_GUARD,
    is_redis_ready,
    require_binary,
)

from .net import ROOT, Host, Lab

REDIS_PORT = 6379
SENTINEL_PORT = 26379
WORKER_PORT = 8000
MASTER_NAME = "mymaster"
DOWN_AFTER_MS = 2000
READY_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Timing:
    """How fast Redis judges a node down and fails over, and when a primary refuses
    writes: the suite's own defaults, or a shipped configuration's (faults/shipped.py)."""

    down_after_ms: int = DOWN_AFTER_MS
    failover_timeout_ms: int = 10000
    node_timeout_ms: int = NODE_TIMEOUT_MS
    guard: tuple[str, ...] = REDIS_REPLICA_GUARD

    def cluster_options(self) -> list[str]:
        options = list(CLUSTER_OPTIONS)
        options[options.index("--cluster-node-timeout") + 1] = str(self.node_timeout_ms)
        return options


@dataclass
class Deployment:
    """The processes of one deployment, by host name, and how to reach its workers."""

    lab: Lab
    directory: Path
    # The counter the run drives: a nemesis may aim at the node that holds it.
    counter: str = "faults"
    # The host the nemesis at work struck, for its heal.
    target: str = "r1"
    timing: Timing = field(default_factory=Timing)
    processes: dict[str, Child] = field(default_factory=dict)
    redis: list[str] = field(default_factory=list)
    sentinels: list[str] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)

    def worker_url(self, name: str) -> str:
        return f"ws://{self.lab[name].address}:{WORKER_PORT}/"

    def hosts(self, names: list[str]) -> list[Host]:
        return [self.lab[name] for name in names]

    def signal(self, name: str, signum: signal.Signals) -> None:
        os.kill(self.processes[name].pid, signum)

    def restart(self, name: str) -> None:
        """Start a killed process again as it was started (a Redis on its own files).

        A Sentinel-managed Redis comes back as a replica of the primary the
        Sentinels name now, as docs/operations.md tells operators: started with
        its old role it would serve as a primary beside the real one until the
        Sentinels notice, and writes acknowledged there are lost.
        """
        old = self.processes[name]
        argv = list(old.argv)
        if name in self.redis and self.sentinels:
            primary = self.lab[current_primary(self, 0)].address
            if primary != self.lab[name].address:
                argv = [*_without_replicaof(argv), "--replicaof", primary, str(REDIS_PORT)]
        child = Child(name, argv, old.env, log_path=old.log_path).start()
        self.processes[name] = child
        ready = is_redis_ready if name in self.redis else (lambda line: "subscribed to" in line)
        child.wait_for_line(ready, READY_SECONDS)

    def stop(self) -> None:
        for child in reversed(list(self.processes.values())):
            child.stop()


def _without_replicaof(argv: list[str]) -> list[str]:
    if "--replicaof" not in argv:
        return argv
    at = argv.index("--replicaof")
    return argv[:at] + argv[at + 3 :]


def hosts_of(kind: str, replicas: int = 1) -> list[str]:
    """The lab's host names for a deployment."""
    if kind == "single":
        return ["r1", "w1", "w2"]
    if kind == "cluster":
        return [*(f"r{n}" for n in range(1, 3 * (1 + replicas) + 1)), "w1", "w2"]
    data = [f"r{n}" for n in range(1, replicas + 2)]
    return [*data, "s1", "s2", "s3", "w1", "w2"]


def start(
    kind: str,
    lab: Lab,
    directory: Path,
    replicas: int = 1,
    acks: int = 1,
    timing: Timing | None = None,
) -> Deployment:
    deployment = Deployment(lab, directory)
    deployment.timing = timing or Timing()
    try:
        if kind == "cluster":
            _start_cluster(deployment, replicas, acks)
        elif kind == "single":
            _start_redis(deployment, "r1", [])
            _start_workers(deployment, {"REDIS_URL": f"redis://{lab['r1'].address}:{REDIS_PORT}/0"})
        else:
            _start_sentinel_set(deployment, replicas, acks)
    except BaseException:
        deployment.stop()
        raise
    return deployment


def _start_sentinel_set(deployment: Deployment, replicas: int, acks: int) -> None:
    lab = deployment.lab
    primary = lab["r1"].address
    guard = list(deployment.timing.guard)
    _start_redis(deployment, "r1", guard)
    for number in range(2, replicas + 2):
        _start_redis(deployment, f"r{number}", [*guard, "--replicaof", primary, str(REDIS_PORT)])
    for name in ("s1", "s2", "s3"):
        _start_sentinel(deployment, name, primary)
    for name in ("s1", "s2", "s3"):
        child = deployment.processes[name]
        for _ in range(replicas):
            child.wait_for_line(lambda line: "+slave " in line, READY_SECONDS)
    sentinels = ",".join(f"{lab[s].address}:{SENTINEL_PORT}" for s in ("s1", "s2", "s3"))
    _start_workers(deployment, {"REDIS_SENTINELS": sentinels, "REDIS_REPLICA_ACKS": str(acks)})


def _start_cluster(deployment: Deployment, replicas: int, acks: int) -> None:
    lab = deployment.lab
    names = [f"r{n}" for n in range(1, 3 * (1 + replicas) + 1)]
    for name in names:
        _start_redis(deployment, name, [*deployment.timing.cluster_options(),
                                        *deployment.timing.guard])  # fmt: skip
    addresses = [f"{lab[name].address}:{REDIS_PORT}" for name in names]
    cli = require_binary("redis-cli", "redis-tools")
    create = [cli, "--cluster", "create", *addresses, "--cluster-replicas", str(replicas)]
    create.append("--cluster-yes")
    subprocess.run(create, check=True, capture_output=True, timeout=120)
    for name in names:
        host = lab[name].address
        role = _cli(host, "ROLE").split()[0]
        if role == "master":
            # Replicas just attached still sync; until then no increment can be confirmed.
            _cli(host, "WAIT", "1", "60000")
    _start_workers(
        deployment, {"REDIS_CLUSTER_NODES": ",".join(addresses), "REDIS_REPLICA_ACKS": str(acks)}
    )


def _cli(host: str, *command: str) -> str:
    cli = require_binary("redis-cli", "redis-tools")
    argv = [cli, "-h", host, "-p", str(REDIS_PORT), *command]
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=90).stdout


def current_primary(deployment: Deployment, slot: int) -> str:
    """The host of the primary now: as the Sentinels name it, or the one serving ``slot`` on
    a cluster, or the one Redis."""
    if deployment.sentinels:
        sentinel = deployment.lab[deployment.sentinels[0]].address
        cli = require_binary("redis-cli", "redis-tools")
        argv = [cli, "-h", sentinel, "-p", str(SENTINEL_PORT), "SENTINEL",
                "get-master-addr-by-name", MASTER_NAME]  # fmt: skip
        address = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=10)
        host = address.stdout.split()[0]
        return next(name for name, h in deployment.lab.hosts.items() if h.address == host)
    if len(deployment.redis) > 1:
        return owner_of_slot(deployment, slot)
    return deployment.redis[0]


def replica_of(deployment: Deployment, primary: str) -> str:
    """A host whose Redis replicates ``primary`` now (INFO replication of the primary)."""
    lab = deployment.lab
    by_address = {host.address: name for name, host in lab.hosts.items()}
    for line in _cli(lab[primary].address, "INFO", "replication").splitlines():
        # slave0:ip=198.18.0.3,port=6379,state=online,offset=...,lag=0
        if line.startswith("slave") and "ip=" in line:
            fields = dict(part.split("=", 1) for part in line.split(":", 1)[1].split(","))
            return by_address[fields["ip"]]
    raise RuntimeError(f"{primary} has no replica")


def owner_of_slot(deployment: Deployment, slot: int) -> str:
    """The host whose node serves ``slot`` now, as the healthy nodes see it (CLUSTER NODES)."""
    lab = deployment.lab
    by_address = {f"{host.address}:{REDIS_PORT}": name for name, host in lab.hosts.items()}
    for line in _cli(lab["r1"].address, "CLUSTER", "NODES").splitlines():
        fields = line.split()
        if len(fields) < 9 or "master" not in fields[2] or "fail" in fields[2]:
            continue
        for spec in fields[8:]:
            first, _, last = spec.partition("-")
            if first.isdigit() and int(first) <= slot <= int(last or first):
                return by_address[fields[1].partition("@")[0]]
    raise RuntimeError(f"no primary serves slot {slot}")


def _start_redis(deployment: Deployment, name: str, extra: list[str]) -> None:
    host = deployment.lab[name]
    data = deployment.directory / name
    data.mkdir(parents=True, exist_ok=True)
    binary = require_binary("redis-server", "redis-server")
    argv = [
        binary,
        *("--bind", host.address, "127.0.0.1", "--port", str(REDIS_PORT), "--dir", str(data)),
        *REDIS_OPTIONS,
        # Only the lab's own hosts reach it: addresses of the test range, on its bridge.
        *("--protected-mode", "no", "--daemonize", "no"),
        *extra,
    ]
    child = Child(name, host.run(*argv), log_path=deployment.directory / f"{name}.log").start()
    deployment.processes[name] = child
    deployment.redis.append(name)
    child.wait_for_line(is_redis_ready, READY_SECONDS)


def _start_sentinel(deployment: Deployment, name: str, primary: str) -> None:
    host = deployment.lab[name]
    config = deployment.directory / f"{name}.conf"
    config.write_text(
        f"port {SENTINEL_PORT}\nbind {host.address}\nprotected-mode no\n"
        f"dir {deployment.directory}\n"
        f"sentinel monitor {MASTER_NAME} {primary} {REDIS_PORT} 2\n"
        f"sentinel down-after-milliseconds {MASTER_NAME} {deployment.timing.down_after_ms}\n"
        f"sentinel failover-timeout {MASTER_NAME} {deployment.timing.failover_timeout_ms}\n"
    )
    binary = require_binary("redis-server", "redis-server")
    argv = host.run(binary, str(config), "--sentinel")
    child = Child(name, argv, log_path=deployment.directory / f"{name}.log").start()
    deployment.processes[name] = child
    deployment.sentinels.append(name)


def _start_workers(deployment: Deployment, redis_env: dict[str, str]) -> None:
    for name in ("w1", "w2"):
        host = deployment.lab[name]
        env = {
            **os.environ,
            **redis_env,
            "PYTHONPATH": str(ROOT),
            "WS_HOST": host.address,
            "WS_PORT": str(WORKER_PORT),
            "WS_RATE_LIMIT": "0",
            "WS_LOG_FORMAT": "text",
            # The lab's own hosts only: no tokens.
            "WS_AUTH": "off",
        }
        argv = host.run(sys.executable, "-m", "ws_counter.worker")
        child = Child(name, argv, env, log_path=deployment.directory / f"{name}.log").start()
        deployment.processes[name] = child
        deployment.workers.append(name)
    for name in deployment.workers:
        deployment.processes[name].wait_for_line(
            lambda line: "subscribed to redis" in line, READY_SECONDS
        )
