"""The Redis pipeline against a real Redis: many callers' commands in one write each turn,
each caller answered with its own replies, and a busy pool is waited for, never an error."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from ws_counter.worker.core.protocol import Increment
from ws_counter.worker.core.state import Applied
from ws_counter.worker.settings import load_settings
from ws_counter.worker.store import RedisStore
from ws_counter.worker.store.keys import state_key
from ws_counter.worker.store.pipeline import Pipeline

from .conftest import RedisServer


def test_each_call_gets_its_own_replies_and_errors(redis_server: RedisServer) -> None:
    async def scenario() -> tuple[list[Any], list[Any], list[Any]]:
        pool = aioredis.BlockingConnectionPool.from_url(redis_server.url, decode_responses=True)
        pipeline = Pipeline(pool, 2, ("WAIT", 0, 10))
        try:
            await pipeline.call([("DEL", "pipe:n", "pipe:h")])
            return await asyncio.gather(
                pipeline.call([("INCR", "pipe:n"), ("INCR", "pipe:n")]),
                pipeline.call([("HGET", "pipe:n", "field")]),  # WRONGTYPE: this call's own
                pipeline.call([("INCR", "pipe:n")], confirm=True),
            )
        finally:
            await pipeline.close()
            await pool.aclose()

    first, second, third = asyncio.run(scenario())
    assert first == [1, 2]
    assert len(second) == 1 and isinstance(second[0], redis_errors.ResponseError)
    # The WAIT closing the write counts replicas for every call before it: none here.
    assert third == [3, 0]


def test_thousands_of_counters_at_once_are_all_applied_without_unavailable(
    redis_server: RedisServer,
) -> None:
    """More calls at once than the pool has connections: they wait their turn."""
    counters = [f"pipe-{n}" for n in range(3000)]

    async def scenario() -> list[Any]:
        store = RedisStore(load_settings({"REDIS_URL": redis_server.url}))
        try:
            return await asyncio.gather(
                *(store.increment(c, [Increment(by=2), Increment(by=3)]) for c in counters)
            )
        finally:
            await store.close()

    results = asyncio.run(scenario())
    assert all(isinstance(outcome, Applied) for outcomes in results for outcome in outcomes)
    assert {outcomes[-1].state.total for outcomes in results} == {5}
    assert redis_server.cli("HGET", state_key(counters[-1]), "total") == "5"
