"""The Python client library against a real cluster: Redis, two workers and HAProxy.

The workers run with WS_RATE_LIMIT=0: these tests send faster than a person
types.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Iterator

import pytest

from ws_counter.tools.cluster import ClusterOptions, LocalCluster
from ws_counter.tools.processes import free_port
from ws_counter_client import (
    Ack,
    ConnectionRefused,
    IncrementRefused,
    IncrementUnknown,
    Total,
    connect,
)

from .conftest import counter_state, http_get, seconds

WORKERS = 2


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    options = ClusterOptions(workers=WORKERS, port=free_port(), worker_env={"WS_RATE_LIMIT": "0"})
    with LocalCluster(options) as running:
        yield running


def connections_of(cluster: LocalCluster, worker: int) -> float:
    _, body = http_get(f"http://127.0.0.1:{cluster.worker_ports[worker]}/metrics")
    match = re.search(r"^ws_counter_connections (\S+)$", body, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_increment_and_totals(cluster: LocalCluster, counter_name: str) -> None:
    async def scenario() -> tuple[Ack, Total, Total | None]:
        async with (
            connect(cluster.url, counter=counter_name) as writer,
            connect(cluster.url, counter=counter_name) as reader,
        ):
            first = reader.total
            ack = await writer.increment(5)
            async with asyncio.timeout(seconds(10)):
                async for total in reader.totals():
                    if total.seq == ack.seq:
                        return ack, total, first
        raise AssertionError("unreachable")

    ack, seen, first = asyncio.run(scenario())
    assert first is not None and (first.total, first.seq) == (0, 0)
    assert (ack.total, ack.seq, ack.duplicate, ack.n) == (5, 1, False, 1)
    assert (seen.counter, seen.total, seen.epoch) == (counter_name, 5, ack.epoch)


def test_a_slow_reader_gets_the_newest_total_not_a_backlog(
    cluster: LocalCluster, counter_name: str
) -> None:
    async def scenario() -> list[int]:
        async with connect(cluster.url, counter=counter_name) as counter:
            totals = counter.totals()
            assert (await anext(totals)).seq == 0
            acks = await asyncio.gather(*(counter.increment(1) for _ in range(50)))
            last = max(ack.seq or 0 for ack in acks)
            seen = [(await anext(totals)).seq]
            return [*seen, last]

    first_after, last = asyncio.run(scenario())
    assert first_after == last == 50


def test_the_library_reconnects_and_resends_across_a_worker_killed_mid_flight(
    cluster: LocalCluster, counter_name: str
) -> None:
    """600 increments, up to 64 in flight, through HAProxy; the worker holding the
    connection is killed (SIGKILL) after 200 acks. The client reconnects through
    HAProxy to the other worker and sends the unacknowledged ones again: each is
    applied exactly once, whether or not its first send had reached Redis."""
    events: list[tuple[bool, str]] = []
    killed: dict[str, int] = {}

    async def scenario() -> list[Ack]:
        async with connect(
            cluster.url,
            counter=counter_name,
            backoff=(0.05, 0.5),
            on_connection=lambda up, detail: events.append((up, detail)),
        ) as counter:
            acked = 0
            done = asyncio.Event()

            async def one(by: int) -> Ack:
                nonlocal acked
                ack = await counter.increment(by)
                acked += 1
                if acked == 200:
                    done.set()
                return ack

            tasks = [asyncio.create_task(one(by % 7 + 1)) for by in range(600)]
            await done.wait()
            holder = next(i for i in range(WORKERS) if connections_of(cluster, i) > 0)
            killed["in_flight"] = counter.in_flight
            killed["worker"] = holder
            cluster.stop_worker(holder, signal.SIGKILL)
            async with asyncio.timeout(seconds(60)):
                return await asyncio.gather(*tasks)

    try:
        acks = asyncio.run(scenario())
    finally:
        worker = killed.get("worker")
        if worker is not None:
            cluster.start_worker(worker)
    expected = sum(by % 7 + 1 for by in range(600))
    assert killed["in_flight"] > 0, "nothing was in flight when the worker died"
    assert any(not up for up, _ in events), "the client never saw its connection drop"
    assert len(acks) == 600
    print(
        f"in flight at the kill: {killed['in_flight']}; "
        f"acks marked duplicate: {sum(ack.duplicate for ack in acks)}"
    )
    assert len({ack.seq for ack in acks}) == 600, "two increments share a seq"
    final = counter_state(cluster, counter_name)
    assert (final["total"], final["seq"]) == (expected, 600)


def test_a_refused_increment_raises_and_the_next_one_takes_its_number(
    cluster: LocalCluster, counter_name: str
) -> None:
    async def scenario() -> tuple[str, Ack, Ack]:
        async with connect(cluster.url, counter=counter_name) as counter:
            top = await counter.increment(2**63 - 1)
            try:
                await counter.increment(1)
            except IncrementRefused as exc:
                code = exc.code
            after = await counter.increment(-5)
            return code, top, after

    code, top, after = asyncio.run(scenario())
    assert code == "overflow"
    assert top.total == 2**63 - 1
    # The overflow used its number up (Redis ran it): the next is n=3.
    assert (after.n, after.total) == (3, 2**63 - 6)


def test_a_handshake_refused_for_good_raises_connection_refused(cluster: LocalCluster) -> None:
    async def scenario() -> None:
        async with connect(cluster.url, counter="Not-Valid"):
            pass

    with pytest.raises(ConnectionRefused) as refused:
        asyncio.run(scenario())
    assert refused.value.status == 400


def test_a_forgotten_session_ends_outstanding_increments_as_unknown(
    cluster: LocalCluster, counter_name: str
) -> None:
    """The session's key is deleted, as WS_SESSION_TTL would: the next increment is
    refused out_of_order (expected 1), ends as IncrementUnknown, and is not sent again;
    the one after it starts a new session and is applied."""

    async def scenario() -> tuple[Ack, str, str, Ack]:
        async with connect(cluster.url, counter=counter_name) as counter:
            first = await counter.increment(1)
            old_session = counter.session
            deleting = await asyncio.create_subprocess_exec(
                "redis-cli",
                "-u",
                cluster.redis_url,
                "DEL",
                f"wsc:{{{counter_name}}}:s:{old_session}",
                stdout=asyncio.subprocess.DEVNULL,
            )
            assert await deleting.wait() == 0
            try:
                await counter.increment(10)
                outcome = "applied"
            except IncrementUnknown:
                outcome = "unknown"
            after = await counter.increment(100)
            assert counter.session != old_session
            return first, outcome, old_session, after

    first, outcome, old_session, after = asyncio.run(scenario())
    assert first.n == 1 and outcome == "unknown"
    assert after.n == 1 and after.session != old_session
    final = counter_state(cluster, counter_name)
    assert (final["total"], final["seq"]) == (101, 2)
