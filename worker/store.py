"""The only module that talks to Redis.

A counter ``NAME`` lives in three kinds of keys, all hash-tagged ``{NAME}``:

* ``wsc:{NAME}``: a hash with ``epoch``, ``seq`` and ``total``;
* ``wsc:{NAME}:id:<id>``: the outcome of an increment with that id, kept for
  the dedup window so that a retry gets the original ack;
* the channel ``wsc:{NAME}:updates`` carries ``epoch seq total`` after every
  change, published by the same Lua call that made it.

redis-py's exceptions are translated into worker.errors here and nowhere else.
Neither client retries anything on its own: a retried EVALSHA after a lost
reply could apply an increment twice, and a silent pub/sub reconnect would
skip the resync that repairs the messages pub/sub dropped meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from .errors import CounterError, OutcomeUnknown, StoreRejected, StoreUnavailable
from .protocol import Applied, CounterState, Increment, decode_state
from .settings import Settings

log = logging.getLogger("ws_counter.store")

CONTROL_CHANNEL = "wsc:control"
_BACKOFF_FIRST = 0.05
_BACKOFF_CAP = 2.0


def state_key(counter: str) -> str:
    return f"wsc:{{{counter}}}"


def channel_name(counter: str) -> str:
    return f"wsc:{{{counter}}}:updates"


def id_key_prefix(counter: str) -> str:
    return f"wsc:{{{counter}}}:id:"


def counter_of_channel(channel: str) -> str | None:
    if channel.startswith("wsc:{") and channel.endswith("}:updates"):
        return channel[len("wsc:{") : -len("}:updates")]
    return None


def new_epoch() -> str:
    return secrets.token_hex(6)


def backoff_delays(first: float = _BACKOFF_FIRST, cap: float = _BACKOFF_CAP) -> Any:
    """Capped exponential backoff with full jitter, so that workers do not reconnect in step."""
    ceiling = first
    while True:
        yield random.uniform(first / 2, ceiling)
        ceiling = min(cap, ceiling * 2)


def _load_script(name: str) -> str:
    return resources.files("worker").joinpath("lua", name).read_text()


def _translate(exc: Exception) -> Exception:
    """Map a redis-py exception onto worker.errors.

    A failure while connecting means nothing was sent; anything later (a
    timeout or a dropped connection while waiting for the reply) leaves the
    outcome unknown.
    """
    if isinstance(exc, redis_errors.ResponseError) and not isinstance(
        exc, redis_errors.ReadOnlyError | redis_errors.BusyLoadingError
    ):
        return StoreRejected(str(exc))
    text = str(exc)
    if "connecting to" in text or isinstance(
        exc, redis_errors.BusyLoadingError | redis_errors.ReadOnlyError
    ):
        return StoreUnavailable(f"Redis is unavailable: {text}")
    return OutcomeUnknown(f"lost contact with Redis during the request: {text}")


class RedisStore:
    """Counter state in Redis: atomic increments, announcements and pub/sub."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client = self._new_client(socket_timeout=settings.redis_timeout)
        # The subscriber blocks on reads indefinitely; TCP keepalive notices a
        # peer that vanished without closing the connection.
        self._subscriber_client = self._new_client(socket_timeout=None)
        self._increment = self._client.register_script(_load_script("increment.lua"))
        self._announce = self._client.register_script(_load_script("announce.lua"))
        self._rebase = self._client.register_script(_load_script("rebase.lua"))

    def _new_client(self, socket_timeout: float | None) -> aioredis.Redis:
        settings = self._settings
        options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": settings.redis_timeout,
            "socket_keepalive": True,
            "retry": Retry(NoBackoff(), 0),
            "retry_on_error": [],
            "decode_responses": True,
        }
        if settings.redis_sentinels:
            sentinel = Sentinel(  # type: ignore[no-untyped-call]
                list(settings.redis_sentinels),
                socket_timeout=settings.redis_timeout,
                socket_connect_timeout=settings.redis_timeout,
                retry=Retry(NoBackoff(), 0),
            )
            client: aioredis.Redis = sentinel.master_for(settings.redis_master_name, **options)
            return client
        return aioredis.Redis.from_url(settings.redis_url, **options)

    async def increment(
        self, counter: str, increments: Sequence[Increment]
    ) -> list[Applied | StoreRejected]:
        """Apply increments in order in one atomic call; one outcome per increment."""
        args: list[str | int] = [
            channel_name(counter),
            new_epoch(),
            self._settings.dedup_ttl,
            id_key_prefix(counter),
        ]
        for increment in increments:
            args.extend((increment.by, increment.id or ""))
        keys = [state_key(counter)]
        try:
            if self._settings.redis_replica_acks:
                replies = await self._increment_replicated(keys, args)
            else:
                replies = await self._increment(keys=keys, args=args)
        except redis_errors.RedisError as exc:
            raise _translate(exc) from exc
        return [_parse_outcome(reply) for reply in replies]

    async def _increment_replicated(self, keys: list[str], args: list[str | int]) -> list[str]:
        """The script, then WAIT on the same connection, in one round trip.

        WAIT counts the replicas that have every write this connection made,
        so an increment confirmed by them survives the failover to one of them.
        """
        wanted = self._settings.redis_replica_acks
        # Leave room within the socket timeout for the reply to WAIT itself.
        wait_ms = max(1, int(self._settings.redis_timeout * 1000 * 0.75))
        async with self._client.pipeline(transaction=False) as pipe:
            await self._increment(keys=keys, args=args, client=pipe)
            pipe.execute_command("WAIT", wanted, wait_ms)
            replies, confirmed = await pipe.execute()
        if confirmed < wanted:
            raise OutcomeUnknown(
                f"applied on the master but confirmed by {confirmed} of {wanted} replicas"
            )
        result: list[str] = replies
        return result

    async def announce(self, counter: str) -> CounterState:
        """Publish the counter's current state on its channel (creating it if absent)."""
        try:
            payload = await self._announce(
                keys=[state_key(counter)], args=[channel_name(counter), new_epoch()]
            )
        except redis_errors.RedisError as exc:
            raise _translate(exc) from exc
        return decode_state(payload)

    async def rebase(self, counter: str, old_epoch: str) -> None:
        """Start a new epoch for a counter that went back in time within ``old_epoch``.

        The new state reaches every worker through the counter's channel.
        """
        try:
            await self._rebase(
                keys=[state_key(counter)], args=[channel_name(counter), old_epoch, new_epoch()]
            )
        except redis_errors.RedisError as exc:
            raise _translate(exc) from exc

    async def flush_counter(self, counter: str) -> None:
        """Delete a counter's state (its ids expire on their own); used by tests and tools."""
        try:
            await self._client.delete(state_key(counter))
        except redis_errors.RedisError as exc:
            raise _translate(exc) from exc

    async def close(self) -> None:
        await self._client.aclose()
        await self._subscriber_client.aclose()

    def new_pubsub(self) -> Any:
        return self._subscriber_client.pubsub()

    def subscription(
        self,
        on_subscribed: Callable[[str], None],
        on_state: Callable[[str, CounterState], None],
        on_connection: Callable[[bool], None],
    ) -> Subscription:
        return Subscription(self, on_subscribed, on_state, on_connection)


def _parse_outcome(reply: str) -> Applied | StoreRejected:
    kind, _, rest = reply.partition(" ")
    if kind == "err":
        return StoreRejected(rest)
    return Applied(decode_state(rest), duplicate=kind == "dup")


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
        self._pubsub: Any = None
        self._established = False
        # Subscribe and unsubscribe commands must reach Redis in the order they
        # were asked for; asyncio.Lock wakes its waiters first come, first served.
        self._command_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()

    def add(self, counter: str) -> None:
        self._counters.add(counter)
        if self._pubsub is not None:
            self._spawn(self._command(self._pubsub, "subscribe", counter))

    def discard(self, counter: str) -> None:
        self._counters.discard(counter)
        if self._pubsub is not None:
            self._spawn(self._command(self._pubsub, "unsubscribe", counter))

    async def _command(self, pubsub: Any, verb: str, counter: str) -> None:
        async with self._command_lock:
            try:
                await getattr(pubsub, verb)(channel_name(counter))
            except (redis_errors.RedisError, OSError) as exc:
                # The reader sees the same failure and reconnects; the
                # resubscription after it covers this channel.
                log.debug("pub/sub %s failed: %s", verb, exc)

    async def _announce(self, pubsub: Any, counter: str) -> None:
        """Announce until it works, while this subscription to the counter lasts."""
        delays = backoff_delays()
        while pubsub is self._pubsub and counter in self._counters:
            try:
                await self._store.announce(counter)
                return
            except CounterError as exc:
                log.warning("announce of %s failed: %s", counter, exc)
            await asyncio.sleep(next(delays))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def run(self) -> None:
        """Keep the subscription alive until cancelled."""
        delays = backoff_delays()
        while True:
            try:
                await self._session()
            except (redis_errors.RedisError, OSError) as exc:
                log.warning(
                    "redis subscription lost: %s",
                    exc,
                    extra={"event": "redis_subscription_lost"},
                )
            finally:
                await self._drop()
            if self._established:
                delays = backoff_delays()
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

    def _dispatch(self, pubsub: Any, message: dict[str, Any]) -> None:
        kind, channel = message["type"], message["channel"]
        if kind == "subscribe":
            if channel == CONTROL_CHANNEL:
                self._established = True
                self._on_connection(True)
                return
            counter = counter_of_channel(channel)
            if counter is not None and counter in self._counters:
                self._on_subscribed(counter)
                self._spawn(self._announce(pubsub, counter))
        elif kind == "message":
            counter = counter_of_channel(channel)
            if counter is None or counter not in self._counters:
                return
            try:
                state = decode_state(message["data"])
            except ValueError:
                log.error("malformed update on %s: %r", channel, message["data"])
                return
            self._on_state(counter, state)

    async def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        self._on_connection(False)
        if pubsub is not None:
            with contextlib.suppress(redis_errors.RedisError, OSError):
                await pubsub.aclose()

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await self._drop()
