"""The worker's subscription against a real Redis that stops answering without closing.

A paused Redis (SIGSTOP) keeps every TCP connection open: nothing is closed, nothing
arrives. A subscriber that only waits to read would wait for ever and its clients
would never hear another total. The subscription PINGs when silent and gives a
connection up when the reply does not come within REDIS_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from ws_counter.worker.core.state import CounterState
from ws_counter.worker.settings import load_settings
from ws_counter.worker.store import RedisStore, Subscription
from ws_counter.worker.store.keys import channel_name
from ws_counter.worker.store.pubsub import UNSUBSCRIBE_GRACE

from .conftest import RedisServer, seconds


class Listener:
    """Records what the subscription reports, with an event per change of connection."""

    def __init__(self) -> None:
        self.up = asyncio.Event()
        self.down = asyncio.Event()
        self.states: list[CounterState] = []
        self.state_arrived = asyncio.Event()

    def on_subscribed(self, counter: str) -> None:
        pass

    def on_state(self, counter: str, state: CounterState) -> None:
        self.states.append(state)
        self.state_arrived.set()

    def on_lost(self, counter: str) -> None:
        pass

    def on_connection(self, up: bool) -> None:
        (self.up if up else self.down).set()
        (self.down if up else self.up).clear()


def test_a_paused_redis_is_noticed_and_the_subscription_comes_back(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path).start()
    assert redis.child is not None
    child = redis.child

    async def scenario() -> None:
        settings = load_settings({"REDIS_URL": redis.url, "REDIS_TIMEOUT": "1"})
        store = RedisStore(settings)
        listener = Listener()
        subscription = Subscription(store, listener)
        subscription.add("paused")
        running = asyncio.create_task(subscription.run())
        try:
            await asyncio.wait_for(listener.up.wait(), seconds(10))
            child.send_signal(signal.SIGSTOP)
            paused = time.monotonic()
            # Silence (1 s) and an unanswered PING (REDIS_TIMEOUT, 1 s): about 2 s.
            await asyncio.wait_for(listener.down.wait(), seconds(15))
            noticed = time.monotonic() - paused
            child.send_signal(signal.SIGCONT)
            await asyncio.wait_for(listener.up.wait(), seconds(15))
            print(f"\npaused Redis noticed after {noticed:.1f} s")
            # Up again means subscribed again: a state published now arrives.
            listener.state_arrived.clear()
            await store.announce("paused")
            await asyncio.wait_for(listener.state_arrived.wait(), seconds(10))
        finally:
            child.send_signal(signal.SIGCONT)
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await subscription.close()
            await store.close()

    try:
        asyncio.run(scenario())
    finally:
        redis.stop()


def test_many_counters_subscribe_in_few_commands_and_leave_after_a_grace(
    redis_server: RedisServer,
) -> None:
    counters = [f"many-subs-{n}" for n in range(2500)]

    def channels() -> set[str]:
        return set(redis_server.cli("PUBSUB", "CHANNELS", "wsc:{many-subs-*").split())

    def subscribe_calls() -> int:
        stats = redis_server.cli("INFO", "commandstats")
        line = next((x for x in stats.splitlines() if x.startswith("cmdstat_subscribe:")), "")
        return int(line.split("calls=")[1].split(",")[0]) if line else 0

    async def scenario() -> None:
        settings = load_settings({"REDIS_URL": redis_server.url})
        store = RedisStore(settings)
        listener = Listener()
        subscription = Subscription(store, listener)
        running = asyncio.create_task(subscription.run())
        try:
            await asyncio.wait_for(listener.up.wait(), seconds(10))
            calls = subscribe_calls()
            confirmed = Confirmations(listener, len(counters))
            for counter in counters:  # all in one turn of the loop
                subscription.add(counter)
            await asyncio.wait_for(confirmed.all.wait(), seconds(10))
            # 2,500 channels in three commands of at most 1,000.
            assert subscribe_calls() - calls == 3
            assert len(channels()) == len(counters)
            for counter in counters:
                subscription.discard(counter)
            # Back within the grace: still subscribed, confirmed again at once.
            confirmed = Confirmations(listener, 1)
            subscription.add(counters[0])
            assert confirmed.all.is_set()
            # The grace is a timer in the subscription: wait it out, then look once.
            await asyncio.sleep(UNSUBSCRIBE_GRACE + 1.0)
            assert channels() == {channel_name(counters[0])}
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await subscription.close()
            await store.close()

    asyncio.run(scenario())


class Confirmations:
    """Set ``all`` once ``count`` counters were confirmed through ``listener``."""

    def __init__(self, listener: Listener, count: int) -> None:
        self.all = asyncio.Event()
        self._left = count
        listener.on_subscribed = self._one  # type: ignore[method-assign]

    def _one(self, counter: str) -> None:
        self._left -= 1
        if self._left <= 0:
            self.all.set()
