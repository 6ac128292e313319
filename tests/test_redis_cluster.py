"""ws-counter on a real Redis Cluster: 3 primaries and 3 replicas on loopback, 2 workers.

Run alone with ``pytest -m redis_cluster``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import threading
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from websockets.asyncio.client import connect

from ws_counter.tools.cluster import ClusterOptions, LocalCluster
from ws_counter.tools.processes import free_port
from ws_counter.tools.rediscluster import RedisClusterProcesses, free_cluster_ports
from ws_counter.tools.redissecurity import ADMIN_USER
from ws_counter.tools.redisserver import ClusterError
from ws_counter.worker.core.protocol import incr_message
from ws_counter.worker.core.slots import key_slot
from ws_counter.worker.store.keys import state_key
from ws_counter_client.rules import new_session_id

from .conftest import http_call, seconds
from .loadrun import BackgroundLoadtest
from .secured import until

pytestmark = [pytest.mark.redis_cluster, pytest.mark.slow]


def primary_of(cluster: LocalCluster, counter: str) -> int:
    """The port of the primary that serves ``counter``'s slot now."""
    assert cluster.redis_cluster is not None
    slot = key_slot(state_key(counter))
    for port, ranges in cluster.redis_cluster.primary_ports().items():
        if any(first <= slot <= last for first, last in ranges):
            return port
    raise AssertionError(f"no primary serves slot {slot}")


def assert_exact(status: int, report: dict[str, Any] | None, output: str) -> dict[str, Any]:
    assert report is not None, output
    assert status == 0 and report["correct"] is True, output
    assert report["increments_acked"] == report["increments_sent"]
    assert report["observed_total"] == report["expected_total"]
    return report


def test_300_counters_spread_over_all_primaries_count_exactly(tmp_path: Path) -> None:
    """300 counters land on all three primaries, and a load test over them is exact per counter."""
    options = ClusterOptions(workers=2, port=free_port(), redis_cluster=3, log_dir=tmp_path)
    with LocalCluster(options) as cluster:
        spread = collections.Counter(primary_of(cluster, f"spread-{n}") for n in range(300))
        assert len(spread) == 3 and min(spread.values()) >= 50, spread
        run = BackgroundLoadtest(
            cluster.url,
            *("--clients", "300", "--counter", "spread", "--counters", "300"),
            *("--increments", "5"),
            json_path=tmp_path / "report.json",
        )
        status, report = run.finish()
    report = assert_exact(status, report, run.output)
    assert report["increments_acked"] == 1500


async def steady_clients(
    url: str, counters: list[str], going: asyncio.Event, stop: asyncio.Event
) -> tuple[int, list[dict[str, Any]]]:
    """One client per counter, an increment every 20 ms each until ``stop``; acks and errors.

    ``going`` is set once every client has its first ack.
    """
    acked, problems = 0, []
    first_acks = asyncio.Semaphore(0)

    async def one(counter: str) -> None:
        nonlocal acked
        session = new_session_id()
        async with connect(f"{url}counters/{counter}") as connection:
            json.loads(await connection.recv())
            n = 0
            while not stop.is_set():
                n += 1
                await connection.send(incr_message(1, session=session, n=n))
                while True:
                    reply = json.loads(await asyncio.wait_for(connection.recv(), seconds(5)))
                    if reply["type"] != "total":
                        break
                if n == 1:
                    first_acks.release()
                if reply["type"] == "ack":
                    acked += 1
                else:
                    problems.append(reply)
                    return
                # A pause that ends early on stop; wait_for cancels its waiter (no task left).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.02)

    async def all_going() -> None:
        for _ in counters:
            await first_acks.acquire()
        going.set()

    waiting = asyncio.create_task(all_going())
    await asyncio.gather(*(one(counter) for counter in counters))
    waiting.cancel()
    return acked, problems


def ca_args(cluster: LocalCluster) -> tuple[str, ...]:
    """The load test's --ca for a cluster started with --tls."""
    return ("--ca", str(cluster.ca_file)) if cluster.ca_file else ()


# Secure: TLS to Redis (the cluster bus and replication too) and the workers
# logged in as the least-privilege ACL user (tools/redissecurity.py).
SECURE = pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls-acl"])


@SECURE
def test_a_primary_killed_under_load_fails_over_without_losing_an_acknowledged_increment(
    tmp_path: Path, tls: bool
) -> None:
    """SIGKILL a primary: its replica takes over, its counters' clients get `unavailable` and
    go on; with replica acks every acknowledged increment is there; other shards see nothing."""
    settings = {"REDIS_REPLICA_ACKS": "1", "REDIS_TIMEOUT": "1"}
    options = ClusterOptions(
        workers=2, port=free_port(), redis_cluster=3, worker_env=settings, log_dir=tmp_path, tls=tls
    )
    with LocalCluster(options) as cluster:
        assert cluster.redis_cluster is not None
        doomed = primary_of(cluster, "failover-0")
        elsewhere = [
            c for c in (f"calm-{n}" for n in range(40)) if primary_of(cluster, c) != doomed
        ]
        run = BackgroundLoadtest(
            cluster.url,
            *("--clients", "120", "--counter", "failover", "--counters", "30"),
            *("--rate", "240", "--duration", "18"),
            *ca_args(cluster),
            json_path=tmp_path / "report.json",
        )
        run.wait_until_acking()

        async def scenario() -> tuple[int, list[dict[str, Any]]]:
            going, stop = asyncio.Event(), asyncio.Event()
            calm = asyncio.create_task(
                steady_clients(cluster.worker_url(0), elsewhere[:6], going, stop)
            )
            started = asyncio.ensure_future(going.wait())
            await asyncio.wait(
                {started, calm}, timeout=seconds(30), return_when=asyncio.FIRST_COMPLETED
            )
            started.cancel()
            if not going.is_set():
                stop.set()
                _, problems = await calm
                raise AssertionError(f"the calm clients did not get going: {problems}")
            marks = [worker.mark() for worker in cluster.workers]
            await asyncio.to_thread(cluster.redis_cluster.kill, doomed)  # type: ignore[union-attr]
            # The workers read the new slot map once the replica took over.
            for worker, mark in zip(cluster.workers, marks, strict=True):
                await asyncio.to_thread(
                    worker.wait_for_line,
                    lambda line: '"event": "cluster_topology"' in line,
                    seconds(30),
                    mark,
                )
            # The old primary comes back as a replica, so WAIT can be answered again.
            await asyncio.to_thread(cluster.redis_cluster.start_node, doomed)  # type: ignore[union-attr]
            await asyncio.sleep(1.0)  # the calm clients keep going across the whole window
            stop.set()
            return await calm

        calm_acked, calm_problems = asyncio.run(scenario())
        status, report = run.finish()
    report = assert_exact(status, report, run.output)
    assert report["error_codes"].get("unavailable", 0) > 0, "the failover window was not hit"
    assert calm_problems == [], "clients of other shards noticed the failover"
    assert calm_acked > 0


def served_openapi() -> dict[str, Any]:
    text = resources.files("ws_counter.worker.server").joinpath("web", "openapi.json").read_text()
    document: dict[str, Any] = json.loads(text)
    return document


def assert_documented(status: int, headers: dict[str, str], body: Any) -> None:
    """An answer of POST /counters/{name}/increments is JSON, with a status the OpenAPI
    description names and a body valid against that status's schema."""
    spec = served_openapi()
    responses = spec["paths"]["/counters/{name}/increments"]["post"]["responses"]
    assert str(status) in responses, (status, body)
    assert headers.get("content-type", "").startswith("application/json"), (status, body)
    name = responses[str(status)]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    schema = {**spec["components"]["schemas"][name], "components": spec["components"]}
    jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)


def test_http_increments_answer_json_while_a_primary_is_killed(tmp_path: Path) -> None:
    """POSTs on both workers while a primary dies and comes back: every answer is JSON
    with a documented status (503 `unavailable` in the window), never a plain-text 500."""
    settings = {"REDIS_REPLICA_ACKS": "1", "REDIS_TIMEOUT": "1", "WS_RATE_LIMIT": "0"}
    options = ClusterOptions(
        workers=2, port=free_port(), redis_cluster=3, worker_env=settings, log_dir=tmp_path
    )
    with LocalCluster(options) as cluster:
        assert cluster.redis_cluster is not None
        doomed = primary_of(cluster, "http-0")
        counters = [c for c in (f"http-{n}" for n in range(60)) if primary_of(cluster, c) == doomed]
        bases = [f"http://127.0.0.1:{port}" for port in cluster.worker_ports]
        stop, acked = threading.Event(), threading.Event()
        answers: list[tuple[int, dict[str, str], Any]] = []

        def post_until_stopped(index: int) -> None:
            # Bounded by count as well as by the event.
            for n in range(20_000):
                if stop.is_set():
                    return
                counter = counters[n % len(counters)]
                path = f"/counters/{counter}/increments"
                key = {"Idempotency-Key": f"p{index}-{n}"}
                answer = http_call(bases[index % len(bases)], "POST", path, {"by": 1}, key)
                answers.append(answer)
                if answer[0] == 200:
                    acked.set()

        posters = [threading.Thread(target=post_until_stopped, args=(i,)) for i in range(4)]
        for thread in posters:
            thread.start()
        try:
            assert acked.wait(seconds(30)), answers[:3]
            marks = [worker.mark() for worker in cluster.workers]
            cluster.redis_cluster.kill(doomed)
            for worker, mark in zip(cluster.workers, marks, strict=True):
                worker.wait_for_line(
                    lambda line: '"event": "cluster_topology"' in line, seconds(30), mark
                )
            acked.clear()
            cluster.redis_cluster.start_node(doomed)
            # Acks resume once the old primary rejoined as a replica (WAIT 1 is met).
            assert acked.wait(seconds(60)), answers[-3:]
        finally:
            stop.set()
            for thread in posters:
                thread.join(seconds(30))
        logs = "\n".join(line for worker in cluster.workers for line in worker.output())
    statuses = collections.Counter(status for status, _, _ in answers)
    assert statuses[200] > 0 and statuses[503] > 0, (statuses, answers[:3])
    for status, headers, body in answers:
        assert_documented(status, headers, body)
        if status == 503:
            assert body["code"] == "unavailable", body
    assert "http_handler_failed" not in logs
    assert "REDIS_TLS=true" not in logs, "a killed node was blamed on the TLS setting"


def node_id(cluster: LocalCluster, port: int) -> str:
    assert cluster.redis_cluster is not None
    return cluster.redis_cluster.cli("CLUSTER", "MYID", port=port).strip()


def migrate_slot(cluster: LocalCluster, slot: int, source: int, target: int) -> None:
    """Move one slot with its keys from ``source`` to ``target`` the way redis-cli does."""
    nodes = cluster.redis_cluster
    assert nodes is not None
    source_id, target_id = node_id(cluster, source), node_id(cluster, target)
    nodes.cli("CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id, port=target)
    nodes.cli("CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id, port=source)
    # The target may want a login (over TLS when the cluster bus has it, as Redis decides).
    login = ("AUTH2", ADMIN_USER, nodes.security.admin_password) if nodes.security else ()
    while keys := nodes.cli("CLUSTER", "GETKEYSINSLOT", str(slot), "100", port=source).split():
        nodes.cli(
            "MIGRATE", "127.0.0.1", str(target), "", "0", "5000", *login, "KEYS", *keys, port=source
        )
    for port in nodes.primary_ports():
        nodes.cli("CLUSTER", "SETSLOT", str(slot), "NODE", target_id, port=port)


@SECURE
def test_a_live_counters_slot_migrates_to_another_primary(tmp_path: Path, tls: bool) -> None:
    """Migrating a counter's slot under load: clients keep converging, nothing is lost or
    doubled, and seq never goes backwards."""
    options = ClusterOptions(
        workers=2, port=free_port(), redis_cluster=3, log_dir=tmp_path, tls=tls
    )
    with LocalCluster(options) as cluster:
        source = primary_of(cluster, "moving")
        assert cluster.redis_cluster is not None
        target = next(port for port in cluster.redis_cluster.primary_ports() if port != source)
        run = BackgroundLoadtest(
            cluster.url,
            *("--clients", "40", "--counter", "moving", "--rate", "200", "--duration", "10"),
            *ca_args(cluster),
            json_path=tmp_path / "report.json",
        )
        run.wait_until_acking()
        marks = [worker.mark() for worker in cluster.workers]
        migrate_slot(cluster, key_slot(state_key("moving")), source, target)
        for worker, mark in zip(cluster.workers, marks, strict=True):
            worker.wait_for_line(
                lambda line: '"event": "cluster_topology"' in line, seconds(30), mark
            )
        status, report = run.finish()
        assert primary_of(cluster, "moving") == target
    # "correct" includes that no client saw seq go down within an epoch.
    assert_exact(status, report, run.output)


def test_a_shard_added_under_load_takes_slots_and_counters_stay_exact(tmp_path: Path) -> None:
    """docs/operations.md, "Redis Cluster: scaling out", run under load on a TLS cluster: a
    new primary and its replica join (``--cluster add-node``), ``--cluster rebalance
    --cluster-use-empty-masters`` moves a share of the slots to it, counters whose slots
    moved are served there, and every load-test counter stays exact."""
    options = ClusterOptions(
        workers=2, port=free_port(), redis_cluster=3, redis_tls=True, log_dir=tmp_path,
        worker_env={"WS_RATE_LIMIT": "0"},  # the load test sends faster than a person types
    )  # fmt: skip
    with LocalCluster(options) as cluster:
        nodes = cluster.redis_cluster
        assert nodes is not None
        existing = f"127.0.0.1:{next(iter(nodes.primary_ports()))}"
        run = BackgroundLoadtest(
            cluster.url,
            *("--clients", "48", "--counter", "growing", "--counters", "48"),
            *("--rate", "300", "--duration", "25"),
            json_path=tmp_path / "report.json",
        )
        run.wait_until_acking()
        members = list(nodes.ports)
        primary, replica = free_cluster_ports(2, taken=members)
        for port in (primary, replica):
            nodes.start_node(port)
        # Step 2: add-node copies the cluster's functions to the new primary, a write that
        # min-replicas-to-write refuses while it has no replica; it serves no slot yet.
        nodes.cli("CONFIG", "SET", "min-replicas-to-write", "0", port=primary)
        nodes.cli("--cluster", "add-node", f"127.0.0.1:{primary}", existing, port=None)
        primary_id = node_id(cluster, primary)
        # The nodes learn of a new one by gossip, which they announce to no client.
        until(partial(known_everywhere, nodes, [*members, primary], primary_id))
        nodes.cli(
            "--cluster", "add-node", f"127.0.0.1:{replica}", existing, "--cluster-slave",
            "--cluster-master-id", primary_id, port=None, timeout=60,
        )  # fmt: skip
        # Step 3: the replica in sync, and the guard back, before the shard takes writes.
        assert nodes.cli("WAIT", "1", "30000", port=primary, timeout=40).strip() == "1"
        nodes.cli("CONFIG", "SET", "min-replicas-to-write", "1", port=primary)
        until(partial(known_everywhere, nodes, [*members, primary], node_id(cluster, replica)))
        until(partial(agree, nodes, existing))
        nodes.cli(
            "--cluster", "rebalance", existing, "--cluster-use-empty-masters",
            port=None, timeout=300,
        )  # fmt: skip
        # The slots moved while the load ran.
        assert run.process.poll() is None, "the load ended before the rebalance did"
        owned = nodes.primary_ports()
        moved = [
            f"growing-{i}" for i in range(48) if primary_of(cluster, f"growing-{i}") == primary
        ]
        status, report = run.finish()
    assert len(owned) == 4 and len(owned[primary]) > 0, owned
    # A quarter of the slots moved; with 48 counters some of theirs did too.
    assert moved, "no counter's slot moved to the new primary"
    assert_exact(status, report, run.output)


def agree(nodes: RedisClusterProcesses, node: str) -> bool:
    """Whether ``redis-cli --cluster check`` finds every node agreeing on the slots."""
    try:
        return "[OK] All nodes agree" in nodes.cli("--cluster", "check", node, port=None)
    except ClusterError:
        return False


def known_everywhere(nodes: RedisClusterProcesses, ports: list[int], wanted: str) -> bool:
    """Whether every node on ``ports`` lists the node ``wanted`` in CLUSTER NODES."""
    return all(wanted in nodes.cli("CLUSTER", "NODES", port=port) for port in ports)
