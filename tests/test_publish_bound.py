"""The publish bound against a real Redis: a hot counter's state goes out at most
WS_PUBLISH_RATE times a second, acks still carry each increment's own total, and
the newest state always goes out."""

from __future__ import annotations

import asyncio
import contextlib
import time

import redis.asyncio as aioredis

from ws_counter.worker.core.protocol import Increment
from ws_counter.worker.core.state import Applied, CounterState, decode_state
from ws_counter.worker.errors import OutcomeUnknown
from ws_counter.worker.settings import load_settings
from ws_counter.worker.store import RedisStore
from ws_counter.worker.store.keys import channel_name, state_key
from ws_counter.worker.store.typed import close_pubsub

from .conftest import RedisServer, seconds


async def _burst(
    url: str, counter: str, rate: int, calls: int
) -> tuple[list[CounterState], list[CounterState], float]:
    """``calls`` increments one after another; the states acked, the states published
    (until the last acked one arrived), and how long the burst took."""
    listener = aioredis.Redis.from_url(url, decode_responses=True)
    pubsub = listener.pubsub()
    await pubsub.subscribe(channel_name(counter))
    await pubsub.get_message(timeout=seconds(5))  # the subscribe confirmation
    store = RedisStore(load_settings({"REDIS_URL": url, "WS_PUBLISH_RATE": str(rate)}))
    acked: list[CounterState] = []
    published: list[CounterState] = []
    try:
        started = time.monotonic()
        for _ in range(calls):
            (outcome,) = await store.increment(counter, [Increment(by=1)])
            assert isinstance(outcome, Applied)
            acked.append(outcome.state)
        took = time.monotonic() - started
        async with asyncio.timeout(seconds(10)):
            while not published or published[-1].seq < acked[-1].seq:
                message = await pubsub.get_message(timeout=None)
                if message and message["type"] == "message":
                    published.append(decode_state(message["data"]))
    finally:
        await close_pubsub(pubsub)
        await listener.aclose()
        await store.close()
    return acked, published, took


def test_a_hot_counter_is_published_at_most_rate_times_a_second(
    redis_server: RedisServer, counter_name: str
) -> None:
    acked, published, took = asyncio.run(_burst(redis_server.url, counter_name, 10, 300))
    # Every ack has its own total, one more each time.
    assert [state.total for state in acked] == list(range(1, 301))
    # At 10 a second: a leading publish, one per 100 ms, and the trailing one.
    assert len(published) <= took / 0.1 + 2, (len(published), took)
    assert published[-1] == acked[-1]
    assert [s.seq for s in published] == sorted({s.seq for s in published})
    print(f"\n300 increments in {took * 1000:.0f} ms: {len(published)} publishes")


def test_rate_zero_publishes_every_increment(redis_server: RedisServer, counter_name: str) -> None:
    acked, published, _ = asyncio.run(_burst(redis_server.url, counter_name, 0, 50))
    assert published == acked


def test_a_stopping_worker_sends_the_state_it_held(
    redis_server: RedisServer, counter_name: str
) -> None:
    async def scenario() -> tuple[CounterState, CounterState]:
        listener = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        pubsub = listener.pubsub()
        await pubsub.subscribe(channel_name(counter_name))
        await pubsub.get_message(timeout=seconds(5))
        # One publish a second: the second increment is held for its timer.
        settings = load_settings({"REDIS_URL": redis_server.url, "WS_PUBLISH_RATE": "1"})
        store = RedisStore(settings)
        try:
            await store.increment(counter_name, [Increment(by=1)])
            (outcome,) = await store.increment(counter_name, [Increment(by=1)])
            assert isinstance(outcome, Applied)
        finally:
            await store.close()
        states: list[CounterState] = []
        async with asyncio.timeout(seconds(5)):
            while len(states) < 2:
                message = await pubsub.get_message(timeout=None)
                if message and message["type"] == "message":
                    states.append(decode_state(message["data"]))
        await close_pubsub(pubsub)
        await listener.aclose()
        return states[-1], outcome.state

    last_published, last_acked = asyncio.run(scenario())
    assert last_published == last_acked


def test_a_state_held_by_an_increment_answered_unknown_still_goes_out(
    redis_server: RedisServer, counter_name: str
) -> None:
    """A WAIT that falls short answers the increment unknown although its step ran and
    held its state back: the held state must still be sent (a failover test once ended
    with every client a few increments behind the total Redis held)."""

    async def scenario() -> tuple[list[CounterState], str]:
        listener = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        pubsub = listener.pubsub()
        await pubsub.subscribe(channel_name(counter_name))
        await pubsub.get_message(timeout=seconds(5))
        # A Redis without replicas never confirms: every increment is answered unknown.
        settings = load_settings(
            {
                "REDIS_URL": redis_server.url,
                "REDIS_REPLICA_ACKS": "1",
                "REDIS_TIMEOUT": "0.4",
                "WS_PUBLISH_RATE": "1",
            }
        )
        store = RedisStore(settings)
        states: list[CounterState] = []
        try:
            for _ in range(2):
                with contextlib.suppress(OutcomeUnknown):
                    await store.increment(counter_name, [Increment(by=1)])
            async with asyncio.timeout(seconds(10)):
                while not states or states[-1].seq < 2:
                    message = await pubsub.get_message(timeout=None)
                    if message and message["type"] == "message":
                        states.append(decode_state(message["data"]))
        finally:
            await store.close()
            await close_pubsub(pubsub)
            await listener.aclose()
        return states, redis_server.cli("HGET", state_key(counter_name), "total")

    states, total = asyncio.run(scenario())
    assert total == "2"
    assert (states[-1].seq, states[-1].total) == (2, 2)
