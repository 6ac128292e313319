"""The popular peer: encode/broadcaster (Redis backend) behind a Starlette WebSocket
endpoint on uvicorn, doing the same job in that stack's idiomatic way.

Increments are INCRBY + INCR + publish through broadcaster; each connection has
its own broadcaster subscription and sends every event to its client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
import uvicorn
from broadcaster import Broadcast
from broadcaster._backends.redis import RedisBackend
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

TOTAL, SEQ, CHANNEL = "peer:total", "peer:seq", "peer:updates"
REDIS_URL = os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/0")


class SubscribedRedisBackend(RedisBackend):
    """broadcaster 0.3.1's Redis backend, with its first-subscribe race fixed.

    Upstream sets the listener loose before SUBSCRIBE has completed; redis-py's
    listen() then ends at once (nothing subscribed yet) and the listener waits
    for a second first subscription that never comes, so no event is ever
    delivered. Subscribing first, then waking the listener, is the smallest fix.
    """

    async def subscribe(self, channel: str) -> None:
        await self._pubsub.subscribe(channel)
        self._ready.set()


events = Broadcast(backend=SubscribedRedisBackend(REDIS_URL))
store = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)


async def counter(websocket: WebSocket) -> None:
    await websocket.accept()
    total, seq = await store.mget(TOTAL, SEQ)
    await websocket.send_text(
        json.dumps(
            {"type": "total", "counter": "default", "total": int(total or 0), "seq": int(seq or 0)}
        )
    )
    async with events.subscribe(channel=CHANNEL) as subscriber:

        async def forward() -> None:
            async for event in subscriber:  # type: ignore[union-attr]
                assert event is not None  # the subscription yields events until closed
                await websocket.send_text(event.message)

        forwarding = asyncio.create_task(forward())
        try:
            while True:
                request = json.loads(await websocket.receive_text())
                new_total = await store.incrby(TOTAL, int(request["by"]))
                new_seq = await store.incr(SEQ)
                await events.publish(
                    channel=CHANNEL,
                    message=json.dumps(
                        {"type": "total", "counter": "default", "total": new_total, "seq": new_seq}
                    ),
                )
                await websocket.send_text(
                    json.dumps(
                        {"type": "ack", "id": request.get("id"), "total": new_total, "seq": new_seq}
                    )
                )
        except WebSocketDisconnect:
            pass
        finally:
            forwarding.cancel()


@asynccontextmanager
async def lifespan(app: Any) -> Any:
    await events.connect()
    # One subscriber for the app's lifetime keeps the Redis subscription up, so
    # clients coming and going never unsubscribe the channel and race the
    # backend's listener into stopping (the same upstream weakness as above).
    async with events.subscribe(channel=CHANNEL) as keeper:

        async def drain() -> None:
            async for _ in keeper:  # type: ignore[union-attr]
                pass

        draining = asyncio.create_task(drain())
        yield
        draining.cancel()
    await events.disconnect()


app = Starlette(routes=[WebSocketRoute("/", counter)], lifespan=lifespan)

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # uvicorn logs "Uvicorn running on ..." once it listens; the benchmark waits for it.
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        ws="websockets-sansio",
        log_level="info",
        access_log=False,
        ws_per_message_deflate=False,
    )
