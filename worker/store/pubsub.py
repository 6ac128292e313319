"""What both subscriptions share: a pub/sub connection and the counters subscribed on it.

``Subscription`` (one Redis) is one such connection; ``ShardedSubscription``
(a Redis Cluster) keeps one per primary (``Shard``). ``Follower`` is the one
type ``follow`` returns for either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from redis import exceptions as redis_errors
from redis.asyncio.client import PubSub

from .keys import channel_name

log = logging.getLogger("ws_counter.store")


class Follower(Protocol):
    """Carries the states of the counters this worker has clients of."""

    def add(self, counter: str) -> None: ...

    def discard(self, counter: str) -> None: ...

    async def run(self) -> None: ...

    async def close(self) -> None: ...


class PubSubConnection:
    """One pub/sub connection, the counters subscribed on it, and its commands in order.

    ``up`` turns true when Redis confirms the connection's control channel.
    """

    def __init__(self, subscribe: str, unsubscribe: str) -> None:
        self.counters: set[str] = set()
        self.pubsub: PubSub | None = None
        self.up = False
        # Subscribe and unsubscribe commands must reach Redis in the order they
        # were asked for; asyncio.Lock wakes its waiters first come, first served.
        self.lock = asyncio.Lock()
        self._verbs = subscribe, unsubscribe

    async def subscribe(self, counter: str) -> None:
        await self._command(self._verbs[0], counter)

    async def unsubscribe(self, counter: str) -> None:
        await self._command(self._verbs[1], counter)

    async def _command(self, verb: str, counter: str) -> None:
        async with self.lock:
            pubsub = self.pubsub
            if pubsub is None:
                return
            try:
                await getattr(pubsub, verb)(channel_name(counter))
            except (redis_errors.RedisError, OSError) as exc:
                # The reader sees the same failure; the resubscription after it
                # covers this channel.
                log.debug("pub/sub %s failed: %s", verb, exc)

    def detach(self) -> PubSub | None:
        """The connection, no longer this one's (closed with ``close_quietly``)."""
        pubsub, self.pubsub, self.up = self.pubsub, None, False
        return pubsub


async def close_quietly(pubsub: PubSub | None) -> None:
    if pubsub is not None:
        with contextlib.suppress(redis_errors.RedisError, OSError):
            await pubsub.aclose()  # type: ignore[no-untyped-call]
