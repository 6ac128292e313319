"""Redis at its maxmemory (noeviction): refusals, never false acks, and a clean recovery."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from ws_counter.tools.redisserver import REDIS_PERSISTENCE
from ws_counter.worker.core.protocol import incr_message
from ws_counter_client.rules import new_session_id

from .clients import Follower, counter_url, receive, receive_until
from .conftest import RedisServer, StartWorker, http_get, seconds

pytestmark = pytest.mark.slow

FILL_LIMIT = 200_000  # increments at most while filling Redis
WINDOW = 32


def used_memory(redis: RedisServer) -> int:
    info = redis.cli("INFO", "memory")
    return int(next(line for line in info.split() if line.startswith("used_memory:")).split(":")[1])


async def fill_until_refused(connection: ClientConnection) -> tuple[int, dict[str, Any]]:
    """Increments with ids (each leaves a key) until Redis refuses; the acked sum, the refusal."""
    acked, sent, deadline = 0, 0, time.monotonic() + seconds(60)
    while sent < FILL_LIMIT and time.monotonic() < deadline:
        for _ in range(WINDOW):
            sent += 1
            await connection.send(incr_message(1, f"fill-{sent}"))
        refusal = None
        for _ in range(WINDOW):
            reply = await receive_until(connection, lambda m: m["type"] in ("ack", "error"))
            if reply["type"] == "ack":
                acked += 1
            else:
                refusal = reply
        if refusal is not None:
            return acked, refusal
    raise AssertionError(f"Redis never refused a write after {sent} increments")


def test_redis_at_maxmemory_refuses_without_false_acks_and_recovers_exactly(
    start_worker: StartWorker, scratch: Path, counter_name: str
) -> None:
    """At maxmemory increments get `unavailable` (none acknowledged falsely, none lost), totals
    still reach clients, and increments succeed again once memory is freed; the total is exact."""
    redis = RedisServer(scratch, (*REDIS_PERSISTENCE, "--maxmemory-policy", "noeviction")).start()
    try:
        worker = start_worker(redis.url, WS_RATE_LIMIT="0", WS_DEDUP_TTL="3600")
        session = new_session_id()

        async def scenario() -> None:
            async with (
                connect(counter_url(worker, counter_name)) as writer,
                connect(counter_url(worker, counter_name)) as watching,
            ):
                await receive(writer)
                watcher = Follower(watching)
                following = asyncio.create_task(watcher.follow())
                redis.cli("CONFIG", "SET", "maxmemory", str(used_memory(redis) + 1_500_000))
                acked, refusal = await fill_until_refused(writer)
                assert refusal["code"] == "unavailable", refusal
                assert "out of memory" in refusal["message"]

                # Right at the limit, writes pass or fail as buffers come and go;
                # hold Redis just over it, as more data would, for what follows.
                redis.cli("CONFIG", "SET", "maxmemory", str(used_memory(redis) - 65_536))

                # Full: a new increment is refused, and nothing is applied.
                await writer.send(incr_message(5, session=session, n=1))
                full = await receive_until(writer, lambda m: m["type"] in ("ack", "error"))
                assert (full["type"], full["code"]) == ("error", "unavailable"), full
                metrics = http_get(worker.http + "/metrics")[1]
                counted = re.search(r"(?m)^ws_counter_redis_out_of_memory_total (\S+)$", metrics)
                assert counted is not None and float(counted.group(1)) >= 2, metrics

                # Totals still reach clients: the one watching all along gets the last
                # acknowledged state (within 1/WS_PUBLISH_RATE s: it may have been held
                # back), and a client joining then gets the exact total at once.
                await watcher.wait_for_seq(acked)
                assert watcher.totals[-1] == acked
                async with connect(counter_url(worker, counter_name)) as joining:
                    assert (await receive(joining))["total"] == acked

                # Free memory (the fill's id keys), and the same increment goes through.
                keys = redis.cli("--scan", "--pattern", f"wsc:{{{counter_name}}}:id:*").split()
                for start in range(0, len(keys), 500):
                    redis.cli("UNLINK", *keys[start : start + 500])
                await writer.send(incr_message(5, session=session, n=1))
                recovered = await receive_until(writer, lambda m: m["type"] in ("ack", "error"))
                assert recovered["type"] == "ack", recovered
                assert recovered["total"] == acked + 5
                await watcher.wait_for_seq(acked + 1)
                assert watcher.totals[-1] == acked + 5
                await watching.close()
                await following

            async with connect(counter_url(worker, counter_name)) as fresh:
                final = await receive(fresh)
            assert (final["total"], final["seq"]) == (acked + 5, acked + 1)

        asyncio.run(scenario())
    finally:
        redis.stop()
