"""The tutorial server taken to Redis the obvious way.

Each increment is INCRBY, then INCR of a sequence number, then PUBLISH: three
round trips, not atomic, so totals can be published out of order. Every
published total is sent to every client, either with an awaited send per
client (``--fanout await``, the naive loop) or with ``websockets.broadcast``
(``--fanout broadcast``). No batching, no conflation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json

import redis.asyncio as aioredis
import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve

TOTAL, SEQ, CHANNEL = "naive:total", "naive:seq", "naive:updates"


async def main(port: int, redis_url: str, fanout: str) -> None:
    store = aioredis.Redis.from_url(redis_url, decode_responses=True)
    clients: set[ServerConnection] = set()

    async def handler(connection: ServerConnection) -> None:
        total, seq = await store.mget(TOTAL, SEQ)
        await connection.send(
            json.dumps(
                {
                    "type": "total",
                    "counter": "default",
                    "total": int(total or 0),
                    "seq": int(seq or 0),
                }
            )
        )
        clients.add(connection)
        try:
            async for message in connection:
                request = json.loads(message)
                new_total = await store.incrby(TOTAL, int(request["by"]))
                new_seq = await store.incr(SEQ)
                text = json.dumps(
                    {"type": "total", "counter": "default", "total": new_total, "seq": new_seq}
                )
                await store.publish(CHANNEL, text)
                await connection.send(
                    json.dumps(
                        {"type": "ack", "id": request.get("id"), "total": new_total, "seq": new_seq}
                    )
                )
        finally:
            clients.discard(connection)

    async def relay() -> None:
        pubsub = store.pubsub()
        await pubsub.subscribe(CHANNEL)
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            if fanout == "broadcast":
                broadcast(clients, message["data"])
            else:
                for client in list(clients):
                    # A closed client: the naive loop just moves on.
                    with contextlib.suppress(Exception):
                        await client.send(message["data"])

    relay_task = asyncio.create_task(relay())
    async with serve(handler, "127.0.0.1", port, compression=None):
        print(f"listening on 127.0.0.1:{port}", flush=True)
        await relay_task


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--fanout", choices=["await", "broadcast"], default="await")
    args = parser.parse_args()
    uvloop.run(main(args.port, args.redis_url, args.fanout))
