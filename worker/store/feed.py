"""A pub/sub connection that feeds the hub: what ``Subscription`` (one Redis) and
``Shard`` (one primary of a Redis Cluster) share.

Written once for both kinds: a session on a new connection (subscribe the
control channel and every counter, dispatch what Redis sends until the
connection fails, report why, close it), what its coming up means (trouble
cleared, access checked), a counter's confirmation (the listener told, the
counter announced so that its snapshot follows through the same connection),
and ``Following``: which counters the worker follows, each on the feed that
carries it, let go a grace period after their last client leaves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio.client import PubSub

from ..core.backoff import backoff_delays
from ..core.hub import StateListener
from ..core.state import CounterState
from ..errors import StoreError
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

    def follow(self, counter: str) -> None:
        """Carry ``counter``: subscribed now if connected, else by the next session."""
        self.counters.add(counter)
        if self.pubsub is not None:
            self.want(counter, True)

    def unfollow(self, counter: str) -> None:
        self.counters.discard(counter)
        if self.pubsub is not None:
            self.want(counter, False)

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


class Following:
    """The counters with clients on this worker, each carried by the feed ``feed_of``
    names. A counter whose last client leaves is let go after UNSUBSCRIBE_GRACE
    seconds, unless a client comes back first."""

    def __init__(self) -> None:
        self.followed: set[str] = set()
        self._leaving = Leaving(self._let_go)

    def feed_of(self, counter: str) -> StateFeed | None:
        """The feed that carries ``counter`` (None while none is known)."""
        raise NotImplementedError

    def feeds(self) -> Iterable[StateFeed]:
        raise NotImplementedError

    def add(self, counter: str) -> None:
        feed = self.feed_of(counter)
        if self._leaving.back(counter):
            # Still subscribed: the new clients get what a confirmation would give them.
            if feed is not None and feed.up and counter in feed.counters:
                feed.on_confirmed(counter)
            return
        self.followed.add(counter)
        if feed is not None and counter not in feed.counters:
            feed.follow(counter)

    def discard(self, counter: str) -> None:
        if counter in self.followed:
            self._leaving.start(counter)

    def _let_go(self, counter: str) -> None:
        self.followed.discard(counter)
        for feed in self.feeds():
            if counter in feed.counters:
                feed.unfollow(counter)

    def stop_following(self) -> None:
        """No counter is let go any more: the subscription is closing."""
        self._leaving.clear()
