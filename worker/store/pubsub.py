"""What both subscriptions share: a pub/sub connection and the counters subscribed on it.

``Subscription`` (one Redis) is one such connection; ``ShardedSubscription``
(a Redis Cluster) keeps one per primary (``Shard``). ``Follower`` is the one
type ``follow`` returns for either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from redis import exceptions as redis_errors
from redis.asyncio.client import PubSub

from .keys import channel_name

log = logging.getLogger("ws_counter.store")

# A pub/sub connection that has heard nothing for this long is sent a PING.
PING_WHEN_SILENT = 1.0

Message = dict[str, Any]


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

    def __init__(self, subscribe: str, unsubscribe: str, reply_timeout: float) -> None:
        self.counters: set[str] = set()
        self.pubsub: PubSub | None = None
        self.up = False
        # Subscribe and unsubscribe commands must reach Redis in the order they
        # were asked for; asyncio.Lock wakes its waiters first come, first served.
        self.lock = asyncio.Lock()
        self._verbs = subscribe, unsubscribe
        self.reply_timeout = reply_timeout

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

    async def listen(self, pubsub: PubSub, handle: Callable[[Message], None]) -> None:
        """Hand every message to ``handle`` until the connection fails or stops answering."""

        async def handled(message: Message) -> None:
            handle(message)

        await listen(pubsub, handled, self.reply_timeout, self.lock)

    def detach(self) -> PubSub | None:
        """The connection, no longer this one's (closed with ``close_quietly``)."""
        pubsub, self.pubsub, self.up = self.pubsub, None, False
        return pubsub


async def close_quietly(pubsub: PubSub | None) -> None:
    if pubsub is not None:
        with contextlib.suppress(redis_errors.RedisError, OSError):
            await pubsub.aclose()  # type: ignore[no-untyped-call]


class Heard:
    """When a connection last delivered anything, and who waits for its next message."""

    def __init__(self) -> None:
        # Called for every message: the loop's clock, looked up once.
        self._clock = asyncio.get_running_loop().time
        self.at = self._clock()
        self.waiter: asyncio.Future[None] | None = None

    def now(self) -> None:
        self.at = self._clock()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


async def listen(
    pubsub: PubSub,
    handle: Callable[[Message], Awaitable[None]],
    reply_timeout: float,
    lock: asyncio.Lock | None = None,
) -> None:
    """Hand every message to ``handle`` until the connection fails or stops answering.

    A subscriber only reads, so a peer that vanished without a FIN or RST (a
    host cut off or paused, a NAT or firewall that forgot the connection)
    would leave it waiting for ever: TCP keepalive notices after hours, and a
    shorter keepalive made redis-py's reader spin. So a connection silent for
    PING_WHEN_SILENT seconds is sent a PING, and one that gives no reply
    within ``reply_timeout`` (REDIS_TIMEOUT) is given up: ConnectionError,
    and the caller makes a new one and resyncs. A busy connection is never
    pinged. ``lock`` orders the PING among the caller's other commands.
    """
    heard = Heard()
    reader = asyncio.ensure_future(_read(pubsub, handle, heard))
    watchdog = asyncio.ensure_future(_watch(pubsub, heard, reply_timeout, lock))
    try:
        done, _ = await asyncio.wait((reader, watchdog), return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in (reader, watchdog):
            task.cancel()
        await asyncio.gather(reader, watchdog, return_exceptions=True)


async def _read(pubsub: PubSub, handle: Callable[[Message], Awaitable[None]], heard: Heard) -> None:
    async for message in pubsub.listen():
        heard.now()
        # On RESP3, redis-py hands the PING's reply over as {"type": "P", ...}:
        # it only counts as heard, and no handler knows the type.
        await handle(message)


async def _watch(
    pubsub: PubSub, heard: Heard, reply_timeout: float, lock: asyncio.Lock | None
) -> None:
    loop = asyncio.get_running_loop()
    while True:
        quiet = loop.time() - heard.at
        if quiet < PING_WHEN_SILENT:
            # A timer for when the silence would be long enough: no event marks silence.
            await asyncio.sleep(PING_WHEN_SILENT - quiet)
            continue
        heard.waiter = loop.create_future()
        try:
            # The PING's write is bounded too: a dead peer's full socket buffer blocks it.
            async with asyncio.timeout(reply_timeout):
                async with lock or contextlib.nullcontext():
                    await pubsub.ping()
                await heard.waiter
        except TimeoutError:
            raise redis_errors.ConnectionError(
                f"no reply to PING within {reply_timeout:g} s (REDIS_TIMEOUT)"
            ) from None
        finally:
            heard.waiter = None
