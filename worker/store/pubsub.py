"""What both subscriptions share: a pub/sub connection and the counters subscribed on it.

``Subscription`` (one Redis) is one such connection; ``ShardedSubscription``
(a Redis Cluster) keeps one per primary (``Shard``). ``Follower`` is the one
type ``follow`` returns for either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from enum import Enum
from typing import Any, Protocol

from redis import exceptions as redis_errors
from redis.asyncio.client import PubSub

from ..core.slots import key_slot
from ..core.state import CounterState, decode_state
from ..errors import StoreMisconfigured
from . import certificates
from .errors import misconfiguration, reset_hint
from .keys import channel_name, counter_of_channel
from .typed import close_pubsub

log = logging.getLogger("ws_counter.store")

# A pub/sub connection that has heard nothing for this long is sent a PING.
PING_WHEN_SILENT = 1.0
# The most channels one SUBSCRIBE or UNSUBSCRIBE names.
CHANNELS_PER_COMMAND = 1000
# A counter whose last local client left stays subscribed this long (seconds), so
# that clients coming and going do not turn into a subscribe and unsubscribe each.
UNSUBSCRIBE_GRACE = 2.0

Message = dict[str, Any]


class Event(Enum):
    """What a message on a subscribed connection means, whichever kind of subscription."""

    CONFIRMED = "confirmed"  # Redis subscribed a channel
    DROPPED = "dropped"  # Redis unsubscribed one: asked for, or its slot moved away
    STATE = "state"  # a counter's state, published
    HEARD = "heard"  # the reply to the connection's own PING: only proof of life


# Every message type Redis sends on a subscribed connection (redis-py's "type").
# The PING's reply is "pong" on RESP2 and "P" (from PONG) on RESP3, with no
# channel. Pattern subscriptions are never made, so their types are not here.
EVENT_OF_TYPE: dict[str, Event] = {
    "subscribe": Event.CONFIRMED,
    "ssubscribe": Event.CONFIRMED,
    "unsubscribe": Event.DROPPED,
    "sunsubscribe": Event.DROPPED,
    "message": Event.STATE,
    "smessage": Event.STATE,
    "pong": Event.HEARD,
    "P": Event.HEARD,
}


def event_of(message: Message) -> tuple[Event, str] | None:
    """The event a message means and its channel; None for a proof of life or a message
    the worker never asked for (logged once per type, never a crash)."""
    kind, channel = message.get("type"), message.get("channel")
    event = EVENT_OF_TYPE.get(kind) if isinstance(kind, str) else None
    if event is Event.HEARD:
        return None
    if event is None or not isinstance(channel, str):
        _unexpected(str(kind), message)
        return None
    return event, channel


_UNEXPECTED: set[str] = set()


def _unexpected(kind: str, message: Message) -> None:
    if kind not in _UNEXPECTED:
        _UNEXPECTED.add(kind)
        log.warning(
            "ignoring an unexpected pub/sub message: %r",
            message,
            extra={"event": "pubsub_unexpected"},
        )


def decoded(channel: str, payload: str) -> CounterState | None:
    """The state a channel message carries; None (logged) if it is malformed."""
    try:
        return decode_state(payload)
    except ValueError:
        log.error("malformed update on %s: %r", channel, payload)
        return None


class Follower(Protocol):
    """Carries the states of the counters this worker has clients of."""

    def add(self, counter: str) -> None: ...

    def discard(self, counter: str) -> None: ...

    async def run(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def trouble(self) -> Trouble: ...


class Trouble:
    """Why the subscription is down, for /readyz and the log.

    A reason is logged when it is new, not on every reconnect: a worker
    without Redis would otherwise say the same thing every two seconds. A
    reason that names a setting (wrong password, untrusted certificate, a
    missing ACL permission) is an error, since no retry cures it.
    """

    def __init__(self, plain: bool) -> None:
        self.reason: str | None = None
        # Connections without TLS (REDIS_TLS off) that never worked: a reset may
        # mean a TLS port. Once one worked, a reset is a node that went away.
        self._plain = plain

    def failed(self, what: str, exc: BaseException) -> None:
        wrong = str(exc) if isinstance(exc, StoreMisconfigured) else misconfiguration(exc)
        reason = f"Redis is misconfigured: {wrong}" if wrong else f"{what}: {exc}"
        if self._plain and not wrong:
            reason += reset_hint(exc)
        if reason != self.reason:
            level = logging.ERROR if wrong else logging.WARNING
            event = "redis_misconfigured" if wrong else "redis_lost"
            log.log(level, "%s", reason, extra={"event": event})
        self.reason = reason

    def cleared(self) -> None:
        # The worker logs the subscription's return ("ready"); the next loss is news.
        self.reason = None
        self._plain = False


class PubSubConnection:
    """One pub/sub connection, the counters subscribed on it, and its commands in order.

    ``up`` turns true when Redis confirms the connection's control channel.
    Subscriptions asked for in one turn of the event loop go to Redis as one
    command (on a cluster, one per slot: SSUBSCRIBE names channels of one
    slot), so a thousand clients joining at once cost a few commands.
    """

    def __init__(
        self,
        control: str,
        reply_timeout: float,
        spawn: Callable[[Coroutine[Any, Any, None]], object],
        *,
        sharded: bool = False,
    ) -> None:
        # Subscribed first: its confirmation says the connection is up.
        self.control = control
        self.counters: set[str] = set()
        self.pubsub: PubSub | None = None
        self.up = False
        # Subscribe and unsubscribe commands must reach Redis in the order they
        # were asked for; asyncio.Lock wakes its waiters first come, first served.
        self.lock = asyncio.Lock()
        self._verbs = ("ssubscribe", "sunsubscribe") if sharded else ("subscribe", "unsubscribe")
        self.reply_timeout = reply_timeout
        self._spawn = spawn
        self._sharded = sharded
        # Counter -> subscribed or not, as last asked; sent by the next command.
        self._wanted: dict[str, bool] = {}
        self._sending = False

    def want(self, counter: str, subscribed: bool) -> None:
        """Subscribe or unsubscribe ``counter`` with the next command, together with
        every other counter asked for by then; the last ask for a counter wins."""
        self._wanted.pop(counter, None)
        self._wanted[counter] = subscribed
        if not self._sending:
            # The task runs in a later turn: every ask of this one goes with it.
            self._sending = True
            self._spawn(self._send_wanted())

    async def _send_wanted(self) -> None:
        async with self.lock:
            self._sending = False
            wanted, self._wanted = self._wanted, {}
            pubsub = self.pubsub
            if pubsub is None:
                return  # the resubscription after a reconnect covers them
            subscribe, unsubscribe = self._verbs
            try:
                for verb, on in ((unsubscribe, False), (subscribe, True)):
                    channels = [channel_name(c) for c, wants in wanted.items() if wants is on]
                    for group in self._commands(channels):
                        await getattr(pubsub, verb)(*group)
            except (redis_errors.RedisError, OSError) as exc:
                # The reader sees the same failure; the resubscription after it
                # covers these channels.
                log.debug("pub/sub command failed: %s", exc)

    def _commands(self, channels: list[str]) -> list[list[str]]:
        """``channels`` split into commands: by slot on a cluster, at most 1,000 each."""
        groups: dict[int, list[str]] = {}
        for channel in channels:
            groups.setdefault(key_slot(channel) if self._sharded else 0, []).append(channel)
        return [
            group[start : start + CHANNELS_PER_COMMAND]
            for group in groups.values()
            for start in range(0, len(group), CHANNELS_PER_COMMAND)
        ]

    async def subscribe_all(self, pubsub: PubSub) -> None:
        """The control channel, then every counter's: after a (re)connect."""
        channels = [self.control, *map(channel_name, self.counters)]
        async with self.lock:
            for group in self._commands(channels):
                await getattr(pubsub, self._verbs[0])(*group)
        # Connected now (redis-py connects on the first command): what did it verify?
        certificates.observe(pubsub.connection)

    async def listen(self, pubsub: PubSub) -> None:
        """Dispatch every message until the connection fails or stops answering."""

        async def handled(message: Message) -> None:
            self.dispatch(message)

        await listen(pubsub, handled, self.reply_timeout, self.lock)

    def dispatch(self, message: Message) -> None:
        """Every message of both subscription kinds, by EVENT_OF_TYPE."""
        meaning = event_of(message)
        if meaning is None:
            return
        event, channel = meaning
        if channel == self.control:
            if event is Event.CONFIRMED:
                self.on_up()
            elif event is Event.DROPPED:
                self.on_control_dropped()
            return
        counter = counter_of_channel(channel)
        if counter is None or counter not in self.counters:
            return  # a counter let go since: its last messages are nobody's
        if event is Event.STATE:
            state = decoded(channel, message["data"])
            if state is not None:
                self.on_state(counter, state)
        elif event is Event.CONFIRMED:
            self.on_confirmed(counter)
        else:
            self.on_dropped(counter)

    def on_up(self) -> None:
        """Redis confirmed the control channel: the connection is up."""
        self.up = True

    def on_control_dropped(self) -> None:
        """Redis dropped the control channel (on a cluster: its slot moved)."""

    def on_confirmed(self, counter: str) -> None:
        """Redis confirmed ``counter``'s channel."""

    def on_state(self, counter: str, state: CounterState) -> None:
        """A state of ``counter``, in the order Redis published them."""

    def on_dropped(self, counter: str) -> None:
        """Redis dropped the channel of ``counter``, still wanted (a slot migrated)."""

    def detach(self) -> PubSub | None:
        """The connection, no longer this one's (closed with ``close_quietly``)."""
        pubsub, self.pubsub, self.up = self.pubsub, None, False
        return pubsub


async def close_quietly(pubsub: PubSub | None) -> None:
    if pubsub is not None:
        with contextlib.suppress(redis_errors.RedisError, OSError):
            await close_pubsub(pubsub)


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


class Leaving:
    """Counters that lost their last local client: each is let go (``let_go``) after
    UNSUBSCRIBE_GRACE seconds, unless a client comes back first (``back``).

    Counters whose grace ends within the same ``tick`` share one timer and are let
    go in one turn of the event loop, so their UNSUBSCRIBE is one command: under
    churn, a timer and a command per counter cost the worker more than the join.
    A counter is let go between ``grace`` and ``grace + tick`` seconds after it
    started leaving.
    """

    def __init__(
        self, let_go: Callable[[str], None], grace: float = UNSUBSCRIBE_GRACE, tick: float = 0.1
    ) -> None:
        self._let_go = let_go
        self._grace = grace
        self._tick = tick
        # Counter -> the tick its grace ends in; tick -> its counters and their timer.
        self._tick_of: dict[str, int] = {}
        self._due: dict[int, tuple[set[str], asyncio.TimerHandle]] = {}

    def __len__(self) -> int:
        return len(self._tick_of)

    def start(self, counter: str) -> None:
        if counter in self._tick_of:
            return
        loop = asyncio.get_running_loop()
        tick = math.ceil((loop.time() + self._grace) / self._tick)
        self._tick_of[counter] = tick
        due = self._due.get(tick)
        if due is None:
            timer = loop.call_at(tick * self._tick, self._expire, tick)
            due = self._due[tick] = (set(), timer)
        due[0].add(counter)

    def back(self, counter: str) -> bool:
        """Whether ``counter`` was leaving (so it is still subscribed); it stays now."""
        tick = self._tick_of.pop(counter, None)
        if tick is None:
            return False
        counters, timer = self._due[tick]
        counters.discard(counter)
        if not counters:
            timer.cancel()
            del self._due[tick]
        return True

    def _expire(self, tick: int) -> None:
        counters, _ = self._due.pop(tick)
        # Forgotten first: a let_go that raises leaves no counter filed under a tick
        # that is gone, for a later ``back`` to trip over.
        for counter in counters:
            del self._tick_of[counter]
        for counter in counters:
            self._let_go(counter)

    def clear(self) -> None:
        for _, timer in self._due.values():
            timer.cancel()
        self._due.clear()
        self._tick_of.clear()
