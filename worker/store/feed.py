"""A pub/sub connection that feeds the hub: what ``Subscription`` (one Redis) and
``Shard`` (one primary of a Redis Cluster) share.

Written once for both kinds: a session on a new connection (subscribe the
control channel and every counter, dispatch what Redis sends until the
connection fails, report why, close it), what its coming up means (trouble
cleared, access checked), and a counter's confirmation (the listener told, the
counter announced so that its snapshot follows through the same connection).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio.client import PubSub

from ..core.backoff import backoff_delays
from ..core.hub import StateListener
from ..core.state import CounterState
from ..errors import StoreError
from .pubsub import PubSubConnection, Trouble, close_quietly
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


class StateFeed(PubSubConnection):
    """One pub/sub connection whose states go to ``listener``."""

    def __init__(
        self,
        control: str,
        store: RedisStore,
        listener: StateListener,
        trouble: Trouble,
        spawn: Callable[[Coroutine[Any, Any, None]], object],
        *,
        sharded: bool = False,
    ) -> None:
        super().__init__(control, store.reply_timeout, spawn, sharded=sharded)
        self.store = store
        self.listener = listener
        self.trouble = trouble

    async def serve(self, connect: Callable[[], PubSub], lost: str, failed: str) -> bool:
        """One session on the connection ``connect`` makes: subscribe everything, dispatch
        until it fails (told to ``trouble`` as ``lost`` once it was up, else ``failed``),
        then detach and close it. Whether it was up."""
        pubsub = None
        try:
            pubsub = self.pubsub = connect()
            await self.subscribe_all(pubsub)
            await self.listen(pubsub)
        except (redis_errors.RedisError, OSError) as exc:
            self.trouble.failed(lost if self.up else failed, exc)
        finally:
            was_up = self.up
            self.detach()
            await close_quietly(pubsub)
        return was_up

    def on_up(self) -> None:
        super().on_up()
        self.trouble.cleared()
        self._spawn(self.store.check_access())

    def on_state(self, counter: str, state: CounterState) -> None:
        self.listener.on_state(counter, state)

    def on_confirmed(self, counter: str) -> None:
        """``counter`` is subscribed: its snapshot follows through this connection, while
        this connection lasts and the counter stays wanted."""
        self.listener.on_subscribed(counter)
        pubsub = self.pubsub
        self._spawn(
            announce_until_done(
                self.store, counter, lambda: pubsub is self.pubsub and counter in self.counters
            )
        )
