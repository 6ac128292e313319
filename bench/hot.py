"""``python -m bench.hot``: one hot counter watched by many workers, with and without the
publish bound (WS_PUBLISH_RATE).

One worker serves 200 WebSocket clients of the counter and paced writers
(2,000 increments a second in all, each on its way at once, as many people
clicking would send them); 63 raw Redis subscribers stand in for 63 more
workers following the same counter, so Redis sends every published state 64
times. Each run reports, from Redis' own INFO and the subscribers' counts:
Redis CPU-seconds per acknowledged increment, messages Redis sent per second
and per acknowledged increment, and the fan-out latency as a person sees it
(from an increment's send until every WebSocket client holds it). Both runs
happen in one sitting; their ratio is the figure to trust. The writers send
far faster than a person types: the worker runs with WS_RATE_LIMIT=0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from ws_counter.worker import runtime
from ws_counter.worker.store.keys import channel_name
from ws_counter.worker.store.typed import close_pubsub

from .contestants import one_redis, ws_counter
from .measure import fanout, receive, spawn

STANDINS = 63
CLIENTS = 200
RATE = 2000.0
# The counter the contestant's URL names (its root: the default counter).
COUNTER = "default"


@dataclass
class Hot:
    publish_rate: int
    acked: int
    acked_per_second: float
    redis_cpu_per_ack_us: float
    messages_per_second: float
    messages_per_ack: float
    fanout_p50_ms: float
    fanout_p99_ms: float
    exact: bool


def run_standins(port: int, count: int, pipe: Connection) -> None:
    """``count`` subscribers of the counter's channel; counts messages until told to stop."""
    pipe.send(runtime.run(_standins(port, count, pipe)))


async def _standins(port: int, count: int, pipe: Connection) -> int:
    clients = [aioredis.Redis(port=port) for _ in range(count)]
    received = [0] * count
    pubsubs = []
    for client in clients:
        pubsub = client.pubsub()
        await pubsub.subscribe(channel_name(COUNTER))
        pubsubs.append(pubsub)

    async def read(index: int) -> None:
        async for message in pubsubs[index].listen():
            if message["type"] == b"message" or message["type"] == "message":
                received[index] += 1

    readers = [asyncio.create_task(read(index)) for index in range(count)]
    pipe.send("subscribed")
    # Wait for the word to stop without blocking the loop: the pipe is read on a thread.
    await asyncio.to_thread(pipe.recv)
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    for pubsub, client in zip(pubsubs, clients, strict=True):
        await close_pubsub(pubsub)
        await client.aclose()
    return sum(received)


def _redis_cpu(port: int) -> float:
    async def read() -> float:
        client = aioredis.Redis(port=port)
        try:
            info: dict[str, Any] = await client.info("cpu")
        finally:
            await client.aclose()
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    return asyncio.run(read())


def measure(publish_rate: int, seconds: float, scratch: Path, rate: float = RATE) -> Hot:
    with (
        one_redis(scratch / f"redis-hot-{publish_rate}") as port,
        ws_counter(port, 1, WS_PUBLISH_RATE=str(publish_rate)) as server,
    ):
        standins, pipe = spawn(run_standins, port, STANDINS)
        assert receive(pipe, 60) == "subscribed"
        cpu0 = _redis_cpu(port)
        run = fanout(server, CLIENTS, rate, seconds)
        cpu = _redis_cpu(port) - cpu0
        pipe.send("stop")
        raw_messages = receive(pipe, 60)
        standins.join(10)
    # The paced writers' increments, all acknowledged when the run is exact.
    acked = int(rate * seconds)
    # The worker's own subscription got what each stand-in got.
    messages = raw_messages * (STANDINS + 1) / STANDINS
    return Hot(
        publish_rate,
        acked,
        round(acked / seconds),
        round(cpu / acked * 1e6, 2),
        round(messages / seconds),
        round(messages / acked, 3),
        run.p50_ms,
        run.p99_ms,
        run.exact and not run.unreached,
    )


def run_hot(rates: list[int], seconds: float, scratch: Path) -> list[Hot]:
    rows = []
    for rate in rates:
        row = measure(rate, seconds, scratch)
        rows.append(row)
        print(
            f"WS_PUBLISH_RATE={rate:<3} {row.acked_per_second:>8,.0f} acks/s"
            f"  Redis {row.redis_cpu_per_ack_us:.2f} CPU-us/ack"
            f"  {row.messages_per_second:>9,.0f} msgs/s ({row.messages_per_ack:.3f}/ack)"
            f"  fan-out p50 {row.fanout_p50_ms:.1f} ms p99 {row.fanout_p99_ms:.1f} ms"
            f"  exact={row.exact}",
            flush=True,
        )
    if len(rows) == 2 and rows[1].messages_per_ack:
        print(
            f"messages per ack fell {rows[0].messages_per_ack / rows[1].messages_per_ack:.1f}x"
            " with the bound",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hot", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="each run's length (5)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ws-counter-bench-hot-") as scratch:
        rows = run_hot([0, 25], args.seconds, Path(scratch))
    if args.json:
        args.json.write_text(json.dumps([asdict(row) for row in rows], indent=2))
    return 0 if all(row.exact for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
