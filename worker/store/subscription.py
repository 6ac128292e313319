"""The pub/sub side: one connection subscribed to the channels of counters with clients."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis import exceptions as redis_errors

from ..core.backoff import backoff_delays
from ..core.hub import StateListener
from ..core.state import CounterState
from ..errors import StoreError
from ..tasks import TaskSet
from .keys import CONTROL_CHANNEL
from .pubsub import Leaving, PubSubConnection, Trouble, close_quietly
from .redis_store import RedisStore

log = logging.getLogger("ws_counter.store")

# Reconnects and announcements back off from 50 ms to 2 s.
BACKOFF_FIRST, BACKOFF_CAP = 0.05, 2.0


async def announce_until_done(
    store: RedisStore, counter: str, still_wanted: Callable[[], bool]
) -> None:
    """Announce ``counter`` until it works, while its subscription lasts (``still_wanted``)."""
    delays = backoff_delays(BACKOFF_FIRST, BACKOFF_CAP)
    while still_wanted():
        try:
            await store.announce(counter)
            return
        except StoreError as exc:
            log.warning("announce of %s failed: %s", counter, exc)
        await asyncio.sleep(next(delays))


class Subscription(PubSubConnection):
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
        super().__init__(CONTROL_CHANNEL, store.reply_timeout, self._background.spawn)
        self._store = store
        self._listener = listener
        self._leaving = Leaving(self._let_go)
        self.trouble = Trouble(plain=not store.nodes.tls)

    def add(self, counter: str) -> None:
        if self._leaving.back(counter):
            # Still subscribed: the new clients get what a confirmation would give them.
            if self.up:
                self.on_confirmed(counter)
            return
        self.counters.add(counter)
        if self.pubsub is not None:
            self.want(counter, True)

    def discard(self, counter: str) -> None:
        if counter in self.counters:
            self._leaving.start(counter)

    def _let_go(self, counter: str) -> None:
        self.counters.discard(counter)
        if self.pubsub is not None:
            self.want(counter, False)

    async def run(self) -> None:
        """Keep the subscription alive until cancelled."""
        delays = backoff_delays(BACKOFF_FIRST, BACKOFF_CAP)
        while True:
            established = False
            try:
                await self._session()
            except (redis_errors.RedisError, OSError) as exc:
                what = "redis subscription lost" if self.up else "cannot subscribe to Redis"
                self.trouble.failed(what, exc)
            finally:
                established = self.up
                await self._drop()
            if established:
                delays = backoff_delays(BACKOFF_FIRST, BACKOFF_CAP)
            # Backoff waits on a timeout; there is nothing to poll meanwhile.
            await asyncio.sleep(next(delays))

    async def _session(self) -> None:
        self.up = False
        pubsub = self.pubsub = self._store.nodes.new_pubsub()
        await self.subscribe_all(pubsub)
        await self.listen(pubsub)

    def on_up(self) -> None:
        super().on_up()
        self.trouble.cleared()
        self._background.spawn(self._store.check_access())
        self._listener.on_connection(True)

    def on_state(self, counter: str, state: CounterState) -> None:
        self._listener.on_state(counter, state)

    def on_confirmed(self, counter: str) -> None:
        """``counter`` is subscribed: its snapshot follows through the subscription."""
        self._listener.on_subscribed(counter)
        pubsub = self.pubsub
        self._background.spawn(
            announce_until_done(
                self._store, counter, lambda: pubsub is self.pubsub and counter in self.counters
            )
        )

    async def _drop(self) -> None:
        pubsub = self.detach()
        self._listener.on_connection(False)
        await close_quietly(pubsub)

    async def close(self) -> None:
        self._leaving.clear()
        await self._background.cancel_all()
        await self._drop()
