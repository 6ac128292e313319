"""Counter state in Redis: atomic increments, announcements and the clients that carry them.

Neither client retries anything on its own: a retried call after a lost reply
could apply an increment twice, and a silent pub/sub reconnect would skip the
resync that repairs what pub/sub dropped meanwhile. Every call takes a
connection from the pool first (``sent=False``: a failure there applied
nothing) and only then writes, so ``map_redis_errors`` can tell "not applied"
from "outcome unknown" by the step that failed, not by an error's text.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.client import PubSub
from redis.asyncio.connection import ConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from ..core.protocol import Increment
from ..core.slots import Address
from ..core.state import APPLIED_EARLIER, Applied, CounterState, Outcome, decode_state
from ..errors import OutcomeUnknown, StoreRejected, StoreUnavailable
from ..settings import Settings
from .errors import NoReplicasError, map_redis_errors, register_error_classes
from .held import HeldStates
from .keys import channel_name, id_key, session_key, state_key
from .pipeline import Command, Pipeline
from .router import REQUEST_CONNECTIONS, ClusterRouter
from .scripts import Script, script
from .sentinel import FailoverWatch


def new_epoch() -> str:
    return secrets.token_hex(6)


class RedisStore:
    """The worker's one way to Redis: increments, announcements, rebases and pub/sub.

    On one Redis (or a Sentinel-managed one) every counter goes to its pool; on a
    Redis Cluster (``REDIS_CLUSTER_NODES``) each goes to the primary that owns
    its slot, and states are published with SPUBLISH on the counter's shard.
    """

    def __init__(self, settings: Settings) -> None:
        register_error_classes()
        self._settings = settings
        self.router: ClusterRouter | None = None
        if settings.redis_cluster_nodes:
            self.router = ClusterRouter(
                settings.redis_cluster_nodes,
                self._options(settings.redis_timeout),
                self._options(None),
            )
        self._publish = "SPUBLISH" if self.router else "PUBLISH"
        # WS_PUBLISH_RATE: a counter's state goes out at most this often.
        rate = settings.publish_rate
        self._interval_ms = 1000 // rate if rate else 0
        self._held = HeldStates(self._interval_ms / 1000, settings.redis_timeout, self._send_held)
        # One Redis (or the Sentinel-managed master): a client for requests and
        # one for the subscription, which blocks on reads indefinitely (its PING
        # when silent, pubsub.listen, notices a peer that vanished without closing).
        self._clients: tuple[aioredis.Redis, aioredis.Redis] | None = None
        self.failovers: FailoverWatch | None = None
        if self.router is None:
            self._clients = (
                self._new_client(socket_timeout=settings.redis_timeout),
                self._new_client(socket_timeout=None),
            )
        # Requests go out through a pipeline per Redis node: the one Redis's now,
        # each cluster primary's as its counters are first asked for.
        self._pipeline: Pipeline | None = None
        self._pipelines: dict[Address, Pipeline] = {}
        if self._clients is not None:
            self._pipeline = self._new_pipeline(self._clients[0].connection_pool)
        if self._clients is not None and settings.redis_sentinels:
            self.failovers = FailoverWatch(
                settings.redis_sentinels,
                settings.redis_master_name,
                {**self._options(None), "socket_timeout": None},
                [client.connection_pool for client in self._clients],
                settings.redis_timeout,
            )

    @property
    def reply_timeout(self) -> float:
        """How long a Redis reply may take (REDIS_TIMEOUT)."""
        return self._settings.redis_timeout

    def _options(self, socket_timeout: float | None) -> dict[str, Any]:
        return connection_options(self._settings, socket_timeout)

    def _new_client(self, socket_timeout: float | None) -> aioredis.Redis:
        return new_client(self._settings, socket_timeout)

    async def increment(self, counter: str, increments: Sequence[Increment]) -> list[Outcome]:
        """Apply increments in order in one atomic step; one outcome per increment."""
        settings = self._settings
        # Each dedup key once in KEYS (a connection's increments share their
        # session's); each increment names its key by index.
        key_index: dict[str, int] = {state_key(counter): 1}
        args: list[Any] = [
            channel_name(counter),
            self._publish,
            new_epoch(),
            settings.dedup_ttl,
            settings.session_ttl,
            settings.session_window,
            self._interval_ms,
        ]
        for increment in increments:
            if increment.session is not None:
                key = session_key(counter, increment.session)
                index = key_index.setdefault(key, len(key_index) + 1)
                args.extend((increment.by, f"s{index}", increment.n))
            elif increment.id is not None:
                index = key_index.setdefault(id_key(counter, increment.id), len(key_index) + 1)
                args.extend((increment.by, f"i{index}", ""))
            else:
                args.extend((increment.by, "", ""))
        try:
            lines = await self._apply(counter, list(key_index), args)
        except OutcomeUnknown:
            # The step may have run and held its state back; no answer says so.
            # A flush with nothing held sends nothing.
            if self._interval_ms:
                self._held.hold(counter)
            raise
        return [_outcome(line) for line in lines]

    async def _apply(self, counter: str, keys: list[str], args: list[Any]) -> list[str]:
        """Run the increment step (and WAIT); its lines. Arms the flush of a held state
        before anything else is decided: a WAIT that falls short still left it held."""
        wanted = self._settings.redis_replica_acks
        if not wanted:
            (replies,) = await self._run_script(counter, script("increment"), keys, args)
            confirmed = 0
        else:
            # WAIT on the same connection, in the same write, counts the
            # replicas that have every write this connection made: an
            # increment they confirmed survives a failover to one of them.
            replies, confirmed = await self._run_script(
                counter, script("increment"), keys, args, confirm=True
            )
        *lines, published = replies
        if published == "held":
            self._held.hold(counter)
        if wanted and confirmed < wanted:
            # A primary its replicas no longer hear: maybe no longer the primary.
            await self.ask_sentinels_again()
            if self.router is not None:
                self.router.changed.set()
            raise OutcomeUnknown(
                f"applied on the master but confirmed by {confirmed} of {wanted} replicas"
            )
        return list(lines)

    async def _send_held(self, counter: str, now: bool) -> float:
        """Publish ``counter``'s held state if its interval is over (or ``now``); else the
        seconds left to wait."""
        (wait_ms,) = await self._run_script(
            counter,
            script("flush"),
            [state_key(counter)],
            [channel_name(counter), self._publish, self._interval_ms, "1" if now else "0"],
        )
        return int(wait_ms) / 1000

    async def announce(self, counter: str) -> CounterState:
        """Publish the counter's current state on its channel (creating it if absent)."""
        (payload,) = await self._run_script(
            counter,
            script("announce"),
            [state_key(counter)],
            [channel_name(counter), self._publish, new_epoch()],
        )
        return decode_state(payload)

    async def read(self, counter: str) -> CounterState:
        """The counter's state as Redis holds it now, for the HTTP API's GET.

        A plain read, so a backend polling a counter adds nothing to its
        fan-out; only a counter never seen before is created (by ``announce``).
        """
        (fields,) = await self._round_trip(
            counter, ("HMGET", state_key(counter), "epoch", "seq", "total")
        )
        epoch, seq, total = fields
        if epoch is None:
            return await self.announce(counter)
        return CounterState(epoch, int(seq), int(total))

    async def rebase(self, counter: str, old_epoch: str) -> None:
        """Start a new epoch for a counter that went back in time within ``old_epoch``.

        The new state reaches every worker through the counter's channel.
        """
        await self._run_script(
            counter,
            script("rebase"),
            [state_key(counter)],
            [channel_name(counter), self._publish, old_epoch, new_epoch()],
        )

    async def _run_script(
        self, counter: str, lua: Script, keys: list[str], args: list[Any], confirm: bool = False
    ) -> list[Any]:
        """EVALSHA (with ``confirm``, then WAIT) in one write; EVAL once if Redis lacks it.

        NOSCRIPT means Redis ran nothing, so sending the text is not a retry
        that could apply anything twice.
        """
        call = (len(keys), *keys, *args)
        try:
            return await self._round_trip(counter, ("EVALSHA", lua.sha, *call), confirm=confirm)
        except StoreRejected as exc:
            if not isinstance(exc.__cause__, redis_errors.NoScriptError):
                raise
        return await self._round_trip(counter, ("EVAL", lua.source, *call), confirm=confirm)

    async def watch_failovers(self) -> None:
        """With Sentinel, follow every failover as the Sentinels announce it (until cancelled)."""
        if self.failovers is not None:
            await self.failovers.run()

    async def ask_sentinels_again(self) -> None:
        if self.failovers is not None:
            await self.failovers.ask_again()

    async def _round_trip(
        self, counter: str, *commands: Command, confirm: bool = False
    ) -> list[Any]:
        """``commands`` for ``counter``'s Redis, in the next write to it; their replies
        (with ``confirm``, WAIT's after them). An error reply raises, mapped by class."""
        try:
            replies = await self._pipeline_for(counter).call(commands, confirm=confirm)
            with map_redis_errors(sent=True):
                for reply in replies:
                    if isinstance(reply, redis_errors.ResponseError):
                        raise reply
            return replies
        except StoreUnavailable as exc:
            if self.router is not None:
                # A MOVED, ASK, TRYAGAIN or CLUSTERDOWN reply, or a primary gone:
                # the slot map may be stale. This request is not retried.
                self.router.changed.set()
            elif isinstance(exc.__cause__, NoReplicasError | redis_errors.ReadOnlyError):
                await self.ask_sentinels_again()
            raise

    def _pipeline_for(self, counter: str) -> Pipeline:
        if self.router is None:
            assert self._pipeline is not None
            return self._pipeline
        owner = self.router.owner(counter)
        if owner is None:
            raise StoreUnavailable(f"no Redis Cluster node owns the slot of {counter} now")
        pipeline = self._pipelines.get(owner)
        if pipeline is None:
            pipeline = self._pipelines[owner] = self._new_pipeline(self.router.pool(owner))
        return pipeline

    def _new_pipeline(self, pool: ConnectionPool) -> Pipeline:
        acks = self._settings.redis_replica_acks
        # WAIT leaves room within the socket timeout for its own reply.
        wait_ms = max(1, int(self._settings.redis_timeout * 1000 * 0.75))
        wait = ("WAIT", acks, wait_ms) if acks else None
        return Pipeline(pool, REQUEST_CONNECTIONS, wait)

    def new_pubsub(self) -> PubSub:
        assert self._clients is not None
        return self._clients[1].pubsub()

    def new_shard_pubsub(self, address: Address) -> PubSub:
        assert self.router is not None
        pool = self.router.pool(address, subscriber=True)
        return aioredis.Redis(connection_pool=pool).pubsub()

    async def close(self) -> None:
        await self._held.close()
        for pipeline in [self._pipeline, *self._pipelines.values()]:
            if pipeline is not None:
                await pipeline.close()
        for client in self._clients or ():
            await client.aclose()
        if self.router is not None:
            await self.router.close()


def connection_options(settings: Settings, socket_timeout: float | None) -> dict[str, Any]:
    """How every connection to Redis is made: no retries of its own, keepalive on."""
    return {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        "socket_keepalive": True,
        "retry": Retry(NoBackoff(), 0),
        "retry_on_error": [],
        "decode_responses": True,
    }


def new_client(settings: Settings, socket_timeout: float | None) -> aioredis.Redis:
    """A client of the one Redis, or of the master the Sentinels name."""
    options = connection_options(settings, socket_timeout)
    if settings.redis_sentinels:
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(settings.redis_sentinels),
            socket_timeout=settings.redis_timeout,
            socket_connect_timeout=settings.redis_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        client: aioredis.Redis = sentinel.master_for(settings.redis_master_name, **options)
        return client
    if socket_timeout is None:
        return aioredis.Redis.from_url(settings.redis_url, **options)
    # Requests share a few connections rather than opening one per counter
    # with a call in flight: a load over 1,000 counters opened hundreds at
    # once and queued behind their handshakes for seconds. A request waits
    # for a free connection (at most the Redis timeout: then unavailable,
    # nothing sent).
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=REQUEST_CONNECTIONS,
        timeout=settings.redis_timeout,
        **options,
    )
    return aioredis.Redis(connection_pool=pool)


def _outcome(reply: str) -> Outcome:
    """One increment's line from the script (the forms are listed in increment.lua)."""
    kind, _, rest = reply.partition(" ")
    if kind == "err":
        code, _, detail = rest.partition(" ")
        if code == "out_of_order":
            return StoreRejected(code, f"expected n={detail}", expected=int(detail))
        return StoreRejected(code, detail)
    if kind == "old":
        return APPLIED_EARLIER
    return Applied(decode_state(rest), duplicate=kind == "dup")
