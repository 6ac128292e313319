"""The pub/sub side: one connection subscribed to the channels of counters with clients."""

from __future__ import annotations

import asyncio

from ..core.backoff import backoff_delays
from ..core.hub import StateListener
from ..tasks import TaskSet
from .feed import BACKOFF_CAP, BACKOFF_FIRST, Following, StateFeed
from .keys import CONTROL_CHANNEL
from .pubsub import Trouble, close_quietly
from .redis_store import RedisStore


class Subscription(StateFeed, Following):
    """One pub/sub connection, subscribed to the channels of counters that have clients.

    The listener hears ``on_subscribed(counter)`` when Redis confirms a
    subscription (the store then announces the counter, so that its state
    follows through the same connection), ``on_state(counter, state)`` for
    every message in the order Redis published them, and ``on_connection(up)``
    when the subscription is established and when it is lost. After a loss it
    reconnects with capped, jittered backoff and subscribes everything again.
    """

    def __init__(self, store: RedisStore, listener: StateListener) -> None:
        self._background = TaskSet()
        trouble = Trouble(plain=not store.nodes.tls)
        StateFeed.__init__(self, CONTROL_CHANNEL, store, listener, trouble, self._background.spawn)
        Following.__init__(self)

    def feed_of(self, counter: str) -> StateFeed:
        return self

    def feeds(self) -> tuple[StateFeed]:
        return (self,)

    async def run(self) -> None:
        """Keep the subscription alive until cancelled."""
        delays = backoff_delays(BACKOFF_FIRST, BACKOFF_CAP)
        while True:
            try:
                connect = self.store.nodes.new_pubsub
                lost, failed = "redis subscription lost", "cannot subscribe to Redis"
                established = await self.serve(connect, lost, failed)
            finally:
                self.listener.on_connection(False)
            if established:
                delays = backoff_delays(BACKOFF_FIRST, BACKOFF_CAP)
            # Backoff waits on a timeout; there is nothing to poll meanwhile.
            await asyncio.sleep(next(delays))

    def on_up(self) -> None:
        super().on_up()
        self.listener.on_connection(True)

    async def close(self) -> None:
        self.stop_following()
        await self._background.cancel_all()
        pubsub = self.detach()
        self.listener.on_connection(False)
        await close_quietly(pubsub)
