"""The pub/sub side: one connection subscribed to the channels of counters with clients."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio.client import PubSub

from ..core.backoff import backoff_delays
from ..core.state import CounterState, decode_state
from ..errors import StoreError
from ..tasks import TaskSet
from .keys import CONTROL_CHANNEL, channel_name, counter_of_channel
from .redis_store import RedisStore

log = logging.getLogger("ws_counter.store")

# Reconnects and announcements back off from 50 ms to 2 s.
BACKOFF_FIRST, BACKOFF_CAP = 0.05, 2.0


def log_lost(what: str, exc: BaseException) -> None:
    """A pub/sub connection ended by a Redis or socket error (it is made again)."""
    log.warning("%s lost: %s", what, exc, extra={"event": "redis_subscription_lost"})


def decoded(channel: str, payload: str) -> CounterState | None:
    """The state a channel message carries; None (logged) if it is malformed."""
    try:
        return decode_state(payload)
    except ValueError:
        log.error("malformed update on %s: %r", channel, payload)
        return None


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


class Subscription:
    """One pub/sub connection, subscribed to the channels of counters that have clients.

    ``on_subscribed(counter)`` is called when Redis confirms a subscription;
    the store then announces the counter so that its state follows through
    the same connection. ``on_state(counter, state)`` is called for every
    message, in the order Redis published them. ``on_connection(up)`` reports
    when the subscription is established and when it is lost. After a loss it
    reconnects with capped, jittered backoff and subscribes everything again.
    """

    def __init__(
        self,
        store: RedisStore,
        on_subscribed: Callable[[str], None],
        on_state: Callable[[str, CounterState], None],
        on_connection: Callable[[bool], None],
    ) -> None:
        self._store = store
        self._on_subscribed = on_subscribed
        self._on_state = on_state
        self._on_connection = on_connection
        self._counters: set[str] = set()
        self._pubsub: PubSub | None = None
        self._established = False
        # Subscribe and unsubscribe commands must reach Redis in the order they
        # were asked for; asyncio.Lock wakes its waiters first come, first served.
        self._command_lock = asyncio.Lock()
        self._background = TaskSet()

    def add(self, counter: str) -> None:
        self._counters.add(counter)
        if self._pubsub is not None:
            self._background.spawn(self._command(self._pubsub, "subscribe", counter))

    def discard(self, counter: str) -> None:
        self._counters.discard(counter)
        if self._pubsub is not None:
            self._background.spawn(self._command(self._pubsub, "unsubscribe", counter))

    async def _command(self, pubsub: PubSub, verb: str, counter: str) -> None:
        async with self._command_lock:
            try:
                await getattr(pubsub, verb)(channel_name(counter))
            except (redis_errors.RedisError, OSError) as exc:
                # The reader sees the same failure and reconnects; the
                # resubscription after it covers this channel.
                log.debug("pub/sub %s failed: %s", verb, exc)

    async def run(self) -> None:
        """Keep the subscription alive until cancelled."""
        delays = backoff_delays(BACKOFF_FIRST, BACKOFF_CAP)
        while True:
            try:
                await self._session()
            except (redis_errors.RedisError, OSError) as exc:
                log_lost("redis subscription", exc)
            finally:
                await self._drop()
            if self._established:
                delays = backoff_delays(BACKOFF_FIRST, BACKOFF_CAP)
            # Backoff waits on a timeout; there is nothing to poll meanwhile.
            await asyncio.sleep(next(delays))

    async def _session(self) -> None:
        self._established = False
        pubsub = self._store.new_pubsub()
        self._pubsub = pubsub
        async with self._command_lock:
            await pubsub.subscribe(CONTROL_CHANNEL, *(channel_name(c) for c in self._counters))
        async for message in pubsub.listen():
            self._dispatch(pubsub, message)

    def _dispatch(self, pubsub: PubSub, message: dict[str, Any]) -> None:
        kind, channel = message["type"], message["channel"]
        if kind == "subscribe":
            if channel == CONTROL_CHANNEL:
                self._established = True
                self._on_connection(True)
                return
            counter = counter_of_channel(channel)
            if counter is not None and counter in self._counters:
                self._on_subscribed(counter)
                self._background.spawn(
                    announce_until_done(
                        self._store,
                        counter,
                        lambda: pubsub is self._pubsub and counter in self._counters,
                    )
                )
        elif kind == "message":
            counter = counter_of_channel(channel)
            if counter is None or counter not in self._counters:
                return
            state = decoded(channel, message["data"])
            if state is not None:
                self._on_state(counter, state)

    async def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        self._on_connection(False)
        if pubsub is not None:
            with contextlib.suppress(redis_errors.RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        await self._background.cancel_all()
        await self._drop()
