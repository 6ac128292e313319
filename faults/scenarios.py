"""Scenarios: a deployment, a nemesis and a load; one run makes a history and its verdict.

A run: clients open on both workers and see the counter's state (the start);
increments go out at a steady rate; after a calm spell the nemesis strikes and
is healed ``hold`` seconds later; increments go on for a while; then sending
stops, outstanding increments are awaited, the final state is read from Redis
through a worker, and every client is given time to converge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ws_counter.tools.loadtest.loadclient import send_at_rate
from ws_counter.tools.loadtest.tally import Tally
from ws_counter.worker.core.slots import key_slot
from ws_counter.worker.core.state import CounterState
from ws_counter.worker.store.keys import state_key

from . import deployments, shipped
from .checker import Verdict, check
from .deployments import Deployment
from .history import History, Window
from .net import Lab
from .recorder import RecordingClient
from .shipped import Shipped

# How long clients get to reach the final state after the run, and increments to be answered.
CONVERGE_SECONDS = 10.0
SETTLE_SECONDS = 30.0
# (strike, heal): what a nemesis does to a deployment, and how it is undone.
Nemesis = tuple[Callable[[Deployment], None], Callable[[Deployment], None]]


def _aim(d: Deployment) -> str:
    """The primary the nemesis strikes: whichever node is the counter's primary now."""
    d.target = deployments.current_primary(d, key_slot(state_key(d.counter)))
    return d.target


def _primary_from_the_rest(d: Deployment) -> None:
    """The primary cut off from every other Redis node and Sentinel; workers still reach it."""
    primary = _aim(d)
    others = [name for name in [*d.redis, *d.sentinels] if name != primary]
    d.lab.partition(d.hosts([primary]), d.hosts(others))


def _workers_from_primary(d: Deployment) -> None:
    d.lab.partition(d.hosts(d.workers), d.hosts([_aim(d)]))


def _split_in_two(d: Deployment) -> None:
    # The first worker stays with the primary and one Sentinel; the rest is a majority.
    side = ["w1", _aim(d), *d.sentinels[:1]]
    other = [name for name in d.lab.hosts if name not in side]
    d.lab.partition(d.hosts(side), d.hosts(other))


def _slow_and_lossy_primary(d: Deployment) -> None:
    primary = d.lab[_aim(d)]
    d.lab.slow(primary, deployments.REDIS_PORT, 0.2, 0.05)
    d.lab.lose(primary, 0.05)


def _heal(d: Deployment) -> None:
    d.lab.heal()


def _signal_primary(signum: signal.Signals) -> Callable[[Deployment], None]:
    return lambda d: d.signal(_aim(d), signum)


def _stop_a_replica(d: Deployment) -> None:
    """A replica of the counter's primary stopped as a pod restart stops it (SIGTERM)."""
    d.target = deployments.replica_of(d, _aim(d))
    d.signal(d.target, signal.SIGTERM)


NEMESES: dict[str, Nemesis] = {
    "partition-primary": (_primary_from_the_rest, _heal),
    "partition-workers-from-primary": (_workers_from_primary, _heal),
    "split-in-two": (_split_in_two, _heal),
    "slow-lossy-primary": (_slow_and_lossy_primary, _heal),
    "pause-primary": (
        _signal_primary(signal.SIGSTOP),
        lambda d: d.signal(d.target, signal.SIGCONT),
    ),
    "kill-primary": (_signal_primary(signal.SIGKILL), lambda d: d.restart(d.target)),
    "kill-worker": (lambda d: d.signal("w1", signal.SIGKILL), lambda d: d.restart("w1")),
    "restart-replica": (_stop_a_replica, lambda d: d.restart(d.target)),
}
# What the random schedule draws from (each healed before the next strikes).
RANDOM_NEMESES = (
    "partition-primary",
    "pause-primary",
    "slow-lossy-primary",
    "kill-primary",
    "kill-worker",
    "partition-workers-from-primary",
)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    deployment: str
    nemesis: str
    replicas: int = 1
    hold: float = 15.0
    calm: float = 3.0
    after: float = 8.0
    clients: int = 20
    rate: float = 200.0
    seed: int = 1
    acks: int = 1
    timing: deployments.Timing = field(default_factory=deployments.Timing)


@dataclass
class Run:
    scenario: Scenario
    history: History
    verdict: Verdict


def run(scenario: Scenario, directory: Path, lab_number: int = 0) -> Run:
    """One run of ``scenario``; every process and the lab are gone when it returns."""
    hosts = deployments.hosts_of(scenario.deployment, scenario.replicas)
    directory.mkdir(parents=True, exist_ok=True)
    with Lab(hosts, lab_number) as lab:
        deployment = deployments.start(
            scenario.deployment, lab, directory, scenario.replicas, scenario.acks, scenario.timing
        )
        try:
            history = asyncio.run(_drive(scenario, deployment))
        finally:
            deployment.stop()
    # Kept beside the logs: a failed run's lost acknowledgements can be traced later.
    (directory / "history.json").write_text(json.dumps(asdict(history)))
    return Run(scenario, history, check(history))


async def _drive(scenario: Scenario, deployment: Deployment) -> History:
    counter = deployment.counter = f"faults-{random.randrange(16**8):08x}"
    tally = Tally([counter])
    history = History(CounterState("", 0, 0))
    clients = [
        RecordingClient(
            number,
            history,
            tally,
            deployment.worker_url(deployment.workers[number % len(deployment.workers)]),
            counter,
        )
        for number in range(scenario.clients)
    ]
    for client in clients:
        if not await client.open():
            raise RuntimeError(f"client {client.number} could not connect")
        await asyncio.wait_for(client.snapshot.wait(), 15)
    first = clients[0].initial
    assert first is not None
    history.start = CounterState(first.epoch, first.seq, first.total)
    history.began = time.monotonic()
    sending = asyncio.create_task(_send(clients, scenario))
    await _strike_and_heal(scenario, deployment, history)
    await sending
    await _settle(clients, deployment, counter, history)
    return history


async def _send(clients: list[RecordingClient], scenario: Scenario) -> None:
    """Increments at ``rate`` per second over the whole run, round-robin over the clients."""
    # A random schedule may run over its hold by one nemesis (6 s) and a pause (3 s).
    extra = 9.0 if scenario.nemesis == "random" else 0.0
    duration = scenario.calm + scenario.hold + extra + scenario.after
    await send_at_rate(clients, scenario.rate, duration, lambda: random.randint(1, 9))


async def _strike_and_heal(scenario: Scenario, deployment: Deployment, history: History) -> None:
    await asyncio.sleep(scenario.calm)
    if scenario.nemesis != "random":
        await _one(scenario.nemesis, scenario.hold, deployment, history)
        return
    # Nemeses drawn at random, each held 2 to 6 s, 1 to 3 s apart, for ``hold`` seconds.
    draw = random.Random(scenario.seed)
    end = time.monotonic() + scenario.hold
    while time.monotonic() < end:
        await _one(draw.choice(RANDOM_NEMESES), draw.uniform(2, 6), deployment, history)
        await asyncio.sleep(draw.uniform(1, 3))


async def _one(name: str, hold: float, deployment: Deployment, history: History) -> None:
    strike, heal = NEMESES[name]
    began = time.monotonic()
    await asyncio.to_thread(strike, deployment)
    await asyncio.sleep(hold)
    await asyncio.to_thread(heal, deployment)
    history.windows.append(Window(name, began, time.monotonic()))


async def _settle(
    clients: list[RecordingClient], deployment: Deployment, counter: str, history: History
) -> None:
    pending = [future for client in clients for future in client.pending()]
    if pending:
        await asyncio.wait(pending, timeout=SETTLE_SECONDS)
    history.ended = time.monotonic()
    history.final = await asyncio.to_thread(_read_final, deployment, counter)
    if history.final is not None:
        # Every client's low-water mark reaching the final seq (the load test's coverage).
        coverage = clients[0].tally.coverage[counter]
        coverage.expect(history.final.seq)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(coverage.at_target.wait(), CONVERGE_SECONDS)
    for client in clients:
        await client.close()


def _read_final(deployment: Deployment, counter: str) -> CounterState | None:
    """The counter's state in Redis, through any worker that answers."""
    for name in deployment.workers:
        url = f"http://{deployment.lab[name].address}:{deployments.WORKER_PORT}/counters/{counter}"
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                document = json.load(response)
        except OSError:
            continue
        return CounterState(document["epoch"], document["seq"], document["total"])
    return None


def _shipped(name: str, nemesis: str, config: Shipped, hold: float) -> Scenario:
    kind = name.split("-")[1]
    return Scenario(name, kind, nemesis, config.replicas, hold=hold, acks=config.acks,
                    timing=config.timing)  # fmt: skip


# The configurations k8s/components ships, read from the manifests (faults/shipped.py).
SHIPPED_SCENARIOS = [
    _shipped("shipped-sentinel-partition-primary", "partition-primary", shipped.sentinel(), 15.0),
    _shipped("shipped-sentinel-pause-primary", "pause-primary", shipped.sentinel(), 10.0),
    _shipped("shipped-sentinel-kill-primary", "kill-primary", shipped.sentinel(), 10.0),
    _shipped("shipped-cluster-partition-primary", "partition-primary", shipped.cluster(), 20.0),
    _shipped("shipped-cluster-restart-replica", "restart-replica", shipped.cluster(), 10.0),
]

SCENARIOS = [
    Scenario("sentinel-partition-primary", "sentinel", "partition-primary"),
    Scenario("sentinel-pause-primary", "sentinel", "pause-primary", hold=10.0),
    Scenario("sentinel-slow-lossy-primary", "sentinel", "slow-lossy-primary", hold=10.0),
    Scenario("sentinel-workers-from-primary", "sentinel", "partition-workers-from-primary"),
    Scenario("sentinel-split-in-two", "sentinel", "split-in-two"),
    Scenario("sentinel2-partition-primary", "sentinel", "partition-primary", replicas=2),
    Scenario("sentinel2-pause-primary", "sentinel", "pause-primary", replicas=2, hold=8.0),
    Scenario("single-partition-workers", "single", "partition-workers-from-primary", hold=8.0),
    Scenario("single-pause", "single", "pause-primary", hold=8.0),
    Scenario("single-slow-lossy-primary", "single", "slow-lossy-primary", hold=6.0),
    Scenario("sentinel2-kill-primary", "sentinel", "kill-primary", replicas=2, hold=10.0),
    Scenario("sentinel2-kill-worker", "sentinel", "kill-worker", replicas=2, hold=5.0),
    Scenario("sentinel2-random", "sentinel", "random", replicas=2, hold=60.0),
    Scenario("sentinel2-acks2-random", "sentinel", "random", replicas=2, hold=60.0, acks=2),
    Scenario("cluster-partition-primary", "cluster", "partition-primary", hold=20.0),
    Scenario("cluster2-partition-primary", "cluster", "partition-primary", 2, hold=20.0),
    *SHIPPED_SCENARIOS,
]
