"""python -m bench.pubsub_choice: why each worker keeps one SSUBSCRIBE connection per primary.

On a real 3-primary Redis Cluster on loopback, one channel per shard is
subscribed; messages are published on one shard only, every 10 ms, while the
other two stay quiet. It measures the delay from publish to receipt, and the
reader's CPU, for:

* redis-py's cluster pub/sub, ``get_sharded_message(timeout=T)`` in a loop
  (its generator asks node after node, each with the full timeout);
* one redis-py PubSub per primary, each read by its own task (what
  ``ws_counter.worker.store.sharded`` does).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis
from hdrh.histogram import HdrHistogram
from redis.asyncio.cluster import RedisCluster

from ws_counter.tools.rediscluster import RedisClusterProcesses
from ws_counter.worker.core.slots import channel_in_slots

from .contestants import NO_PERSISTENCE

MESSAGES = 200
INTERVAL = 0.01


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def publish(cluster: RedisCluster, channel: str, sent: dict[int, float]) -> None:
    for number in range(MESSAGES):
        sent[number] = time.monotonic()
        await cluster.spublish(channel, str(number))
        await asyncio.sleep(INTERVAL)


async def measure(
    name: str, read: Callable[[dict[int, float], HdrHistogram], Awaitable[None]]
) -> None:
    histogram = HdrHistogram(1, 60_000_000, 3)
    sent: dict[int, float] = {}
    started = cpu()
    await read(sent, histogram)
    used = cpu() - started
    print(
        f"{name:44} p50 {histogram.get_value_at_percentile(50) / 1000:8.2f} ms"
        f"  p99 {histogram.get_value_at_percentile(99) / 1000:8.2f} ms"
        f"  max {histogram.get_max_value() / 1000:8.2f} ms  CPU {used:5.2f} s"
        f"  ({histogram.get_total_count()} of {MESSAGES})"
    )


async def run(nodes: RedisClusterProcesses, poll: float) -> None:
    owners = nodes.primary_ports()
    channels = {port: channel_in_slots("probe:", ranges) for port, ranges in owners.items()}
    busy_port = next(iter(channels))
    busy = channels[busy_port]
    cluster = RedisCluster(host="127.0.0.1", port=busy_port, decode_responses=True)
    await cluster.initialize()

    async def with_redis_py(sent: dict[int, float], histogram: HdrHistogram) -> None:
        pubsub = cluster.pubsub()
        for channel in channels.values():
            await pubsub.ssubscribe(channel)
        publisher = asyncio.create_task(publish(cluster, busy, sent))
        received = 0
        deadline = time.monotonic() + MESSAGES * INTERVAL + 10
        while received < MESSAGES and time.monotonic() < deadline:
            message = await pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=poll)
            if message and message["type"] == "smessage":
                number = int(message["data"])
                histogram.record_value(max(1, int((time.monotonic() - sent[number]) * 1e6)))
                received += 1
        await publisher
        await pubsub.aclose()

    async def per_primary(sent: dict[int, float], histogram: HdrHistogram) -> None:
        done = asyncio.Event()
        received = 0

        async def listen(port: int, channel: str) -> None:
            nonlocal received
            client = aioredis.Redis(port=port, decode_responses=True)
            pubsub = client.pubsub()
            await pubsub.ssubscribe(channel)
            async for message in pubsub.listen():
                if message["type"] == "smessage":
                    number = int(message["data"])
                    histogram.record_value(max(1, int((time.monotonic() - sent[number]) * 1e6)))
                    received += 1
                    if received == MESSAGES:
                        done.set()

        listeners = [asyncio.create_task(listen(p, c)) for p, c in channels.items()]
        await asyncio.sleep(0.2)  # let the three SSUBSCRIBEs be confirmed first
        await publish(cluster, busy, sent)
        await asyncio.wait_for(done.wait(), 10)
        for listener in listeners:
            listener.cancel()

    await measure(f"redis-py get_sharded_message(timeout={poll:g})", with_redis_py)
    await measure("one PubSub per primary, a task each", per_primary)
    await cluster.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pubsub_choice", description=__doc__)
    parser.add_argument("--timeouts", default="1,0.1,0", help="get_sharded_message timeouts")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ws-counter-pubsub-") as scratch:
        nodes = RedisClusterProcesses(3, Path(scratch) / "cluster", NO_PERSISTENCE).start()
        try:
            for poll in (float(t) for t in args.timeouts.split(",")):
                asyncio.run(run(nodes, poll))
        finally:
            nodes.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
