"""The Redis pipeline against a real Redis: many callers' commands in one write each turn,
each caller answered with its own replies, and a busy pool is waited for, never an error."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from ws_counter.worker.batcher import Batcher
from ws_counter.worker.core.protocol import Increment
from ws_counter.worker.core.state import Applied, Outcome
from ws_counter.worker.errors import StoreRejected
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


def test_one_step_for_many_counters_keeps_each_counters_keys_and_outcomes(
    redis_server: RedisServer,
) -> None:
    """Counters in one call share its script run, never their dedup keys or outcomes: the
    same session and id on two counters are two, a gap or an overflow is one counter's,
    and a retry of the whole call answers every increment as a duplicate."""
    big = 2**63 - 1
    batches = [
        (
            "many-a",
            [
                Increment(2, session="session1", n=1),
                Increment(3, session="session1", n=2),
                Increment(5, id="x"),
            ],
        ),
        (
            "many-b",
            [
                Increment(7, session="session1", n=1),
                Increment(1, session="session1", n=3),
                Increment(1, id="x"),
            ],
        ),
        ("many-c", [Increment(big), Increment(1)]),
    ]

    async def scenario() -> tuple[list[list[Outcome]], list[list[Outcome]]]:
        store = RedisStore(load_settings({"REDIS_URL": redis_server.url}))
        try:
            assert store.group_of("many-a") == store.group_of("many-b")
            first = await store.increment_many(batches)
            again = await store.increment_many(batches[:2])
            return first, again
        finally:
            await store.close()

    (a, b, c), (a_again, b_again) = asyncio.run(scenario())
    assert [_total(outcome) for outcome in a] == [2, 5, 10]
    assert [_total(outcome) for outcome in b[::2]] == [7, 8]
    assert isinstance(b[1], StoreRejected) and (b[1].code, b[1].expected) == ("out_of_order", 2)
    assert _total(c[0]) == big
    assert isinstance(c[1], StoreRejected) and c[1].code == "overflow"
    assert all(isinstance(o, Applied) and o.duplicate for o in a_again + b_again[::2])
    assert [_total(o) for o in a_again + b_again[::2]] == [2, 5, 10, 7, 8]
    assert isinstance(b_again[1], StoreRejected) and b_again[1].code == "out_of_order"
    totals = [redis_server.cli("HGET", state_key(c), "total") for c in ("many-a", "many-b")]
    assert totals == ["10", "8"]


def test_the_batcher_sends_every_counter_ready_in_a_turn_in_one_call(
    redis_server: RedisServer,
) -> None:
    """A thousand counters submitted in one turn: one call to the store, and a counter's
    increments that arrive while its call is in flight go in its next call, in order."""
    counters = [f"turn-{n}" for n in range(1000)]
    calls: list[list[str]] = []

    class CountingStore:
        """The real store, its calls recorded (beside it: the compiled build's classes
        cannot be subclassed)."""

        def __init__(self, store: RedisStore) -> None:
            self.store = store

        def group_of(self, counter: str) -> Hashable:
            return self.store.group_of(counter)

        async def increment_many(
            self, batches: Sequence[tuple[str, Sequence[Increment]]]
        ) -> list[list[Outcome]]:
            calls.append([counter for counter, _ in batches])
            return await self.store.increment_many(batches)

    async def scenario() -> list[Outcome]:
        store = RedisStore(load_settings({"REDIS_URL": redis_server.url}))
        batcher = Batcher(CountingStore(store))
        try:
            futures = [batcher.submit(counter, Increment(by=1)) for counter in counters]
            await asyncio.sleep(0)  # the turn's call is now in flight
            futures += [batcher.submit(counters[0], Increment(by=n)) for n in (2, 3)]
            outcomes = await asyncio.gather(*futures)
            await batcher.wait_idle()
            return outcomes
        finally:
            await batcher.close()
            await store.close()

    outcomes = asyncio.run(scenario())
    assert calls == [counters, [counters[0]]]
    assert [_total(outcome) for outcome in outcomes[-3:]] == [1, 3, 6]
    assert [_total(outcome) for outcome in outcomes[1:-2]] == [1] * 999


def _total(outcome: Outcome) -> int:
    assert isinstance(outcome, Applied), outcome
    return outcome.state.total
