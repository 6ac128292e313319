"""redis-py calls whose annotations change between releases, typed once here.

redis-py annotates more of its API with each release (8.2 typed
``PubSub.aclose``, which 8.1 left bare). A ``# type: ignore`` at each call
then turns into an "unused ignore" error under ``mypy --strict`` on the next
release. Each function below binds the call to the type this project relies
on, which holds whether or not the installed release annotates it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.asyncio.sentinel import Sentinel


def new_sentinel(sentinels: list[tuple[str, int]], **options: Any) -> Sentinel:
    make: Callable[..., Sentinel] = Sentinel
    return make(sentinels, **options)


async def close_pubsub(pubsub: PubSub) -> None:
    close: Callable[[], Awaitable[None]] = pubsub.aclose
    await close()


async def command(client: aioredis.Redis, *args: str) -> Any:
    """One command whose reply this project parses itself (CLUSTER INFO, ...)."""
    execute: Callable[..., Awaitable[Any]] = client.execute_command
    return await execute(*args)


async def pooled_connection(pool: ConnectionPool) -> AbstractConnection:
    get: Callable[[], Awaitable[AbstractConnection]] = pool.get_connection
    return await get()
