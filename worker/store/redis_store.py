"""Counter state in Redis: atomic increments, announcements, rebases and reads.

Nothing here retries on its own (``connect`` turns redis-py's retries off): a
retried call after a lost reply could apply an increment twice, and a silent
pub/sub reconnect would skip the resync that repairs what pub/sub dropped
meanwhile. Every call takes a connection from the pool first (``sent=False``:
a failure there applied nothing) and only then writes, so ``map_redis_errors``
can tell "not applied" from "outcome unknown" by the step that failed, not by
an error's text.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Hashable, Sequence
from typing import Any

from redis import exceptions as redis_errors

from ..core.backoff import backoff_delays
from ..core.protocol import Increment
from ..core.state import APPLIED_EARLIER, Applied, CounterState, Outcome, decode_state
from ..errors import (
    OutcomeUnknown,
    StoreError,
    StoreFull,
    StoreMisconfigured,
    StoreRejected,
    StoreUnavailable,
)
from ..settings import Settings
from .errors import NoReplicasError, map_redis_errors, register_error_classes
from .held import HeldStates
from .keys import channel_name, id_key, session_key, state_key
from .nodes import Nodes
from .pipeline import Command
from .scripts import Script, script

log = logging.getLogger("ws_counter.store")

# A counter name no client can use (its braces are refused in names): flushing
# it reads one field of a key that never exists.
ACCESS_PROBE = "{probe}"


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
        self.nodes = Nodes(settings)
        self.router = self.nodes.router
        self._publish = "SPUBLISH" if self.router else "PUBLISH"
        # WS_PUBLISH_RATE: a counter's state goes out at most this often.
        rate = settings.publish_rate
        self._interval_ms = 1000 // rate if rate else 0
        self._held = HeldStates(self._interval_ms / 1000, settings.redis_timeout, self._send_held)
        # Why requests fail for a reason only a setting cures (credentials, TLS,
        # ACL), naming it; None while they work. /readyz shows it.
        self._misconfigured: str | None = None

    @property
    def reply_timeout(self) -> float:
        """How long a Redis reply may take (REDIS_TIMEOUT)."""
        return self._settings.redis_timeout

    def group_of(self, counter: str) -> Hashable:
        """Counters of one group may share a call to ``increment_many``: on one Redis,
        every counter; on a Redis Cluster, each counter alone (one call's keys must share
        a slot)."""
        return counter if self.router is not None else None

    async def increment(self, counter: str, increments: Sequence[Increment]) -> list[Outcome]:
        """Apply increments in order in one atomic step; one outcome per increment."""
        (outcomes,) = await self.increment_many([(counter, increments)])
        return outcomes

    async def increment_many(
        self, batches: Sequence[tuple[str, Sequence[Increment]]]
    ) -> list[list[Outcome]]:
        """Apply each counter's increments in order, every counter in one atomic step (so
        all of ``batches`` must be one ``group_of``); one outcome per increment, by
        counter. A failure is the whole step's, so it is raised for every counter."""
        keys, args = _increment_call(self._settings, batches, self._publish, self._interval_ms)
        counters = [counter for counter, _ in batches]
        try:
            segments = await self._apply(counters, keys, args)
        except OutcomeUnknown:
            # The step may have run and held its states back; no answer says so.
            # A flush with nothing held sends nothing.
            if self._interval_ms:
                for counter in counters:
                    self._held.hold(counter)
            raise
        return [[_outcome(line) for line in lines] for lines in segments]

    async def _apply(
        self, counters: list[str], keys: list[str], args: list[Any]
    ) -> list[list[str]]:
        """Run the increment step (and WAIT); each counter's lines. Arms the flush of a
        held state before anything else is decided: a WAIT that falls short still left it
        held."""
        wanted = self._settings.redis_replica_acks
        if not wanted:
            (replies,) = await self.run_script(counters[0], script("increment"), keys, args)
            confirmed = 0
        else:
            # WAIT on the same connection, in the same write, counts the
            # replicas that have every write this connection made: an
            # increment they confirmed survives a failover to one of them.
            replies, confirmed = await self.run_script(
                counters[0], script("increment"), keys, args, confirm=True
            )
        segments = []
        for counter, (*lines, published) in zip(counters, replies, strict=True):
            if published == "held":
                self._held.hold(counter)
            segments.append(lines)
        if wanted and confirmed < wanted:
            # A primary its replicas no longer hear: maybe no longer the primary.
            await self.ask_sentinels_again()
            if self.router is not None:
                self.router.changed.set()
            raise OutcomeUnknown(
                f"applied on the master but confirmed by {confirmed} of {wanted} replicas"
            )
        return segments

    async def _send_held(self, counter: str, now: bool) -> float:
        """Publish ``counter``'s held state if its interval is over (or ``now``); else the
        seconds left to wait."""
        (wait_ms,) = await self.run_script(
            counter,
            script("flush"),
            [state_key(counter)],
            [channel_name(counter), self._publish, self._interval_ms, "1" if now else "0"],
        )
        return int(wait_ms) / 1000

    async def announce(self, counter: str) -> CounterState:
        """Publish the counter's current state on its channel (creating it if absent)."""
        (payload,) = await self.run_script(
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
        await self.run_script(
            counter,
            script("rebase"),
            [state_key(counter)],
            [channel_name(counter), self._publish, old_epoch, new_epoch()],
        )

    async def run_script(
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

    @property
    def misconfigured(self) -> str | None:
        """Why Redis or a Sentinel refuses the worker, naming the setting to fix; None
        while neither does."""
        watch = self.nodes.failovers
        return self._misconfigured or (watch.misconfigured if watch else None)

    async def check_access(self) -> None:
        """Run a step that changes nothing, so that credentials, TLS or ACL permissions
        that stop the worker's scripts show at once (``misconfigured``), not at the
        first increment; while they do, again with backoff, so that /readyz recovers
        when an operator fixes them. Any other failure is for the callers that meet it."""
        delays = backoff_delays(0.5, 5.0)
        while True:
            try:
                await self._send_held(ACCESS_PROBE, now=False)
            except StoreMisconfigured:
                await asyncio.sleep(next(delays))
                continue
            except StoreError:
                pass
            return

    @property
    def follows_failovers(self) -> bool:
        """Whether Sentinels announce failovers to follow (``watch_failovers``)."""
        return self.nodes.failovers is not None

    async def watch_failovers(self) -> None:
        """With Sentinel, follow every failover as the Sentinels announce it (until cancelled)."""
        if self.nodes.failovers is not None:
            await self.nodes.failovers.run()

    async def ask_sentinels_again(self) -> None:
        if self.nodes.failovers is not None:
            await self.nodes.failovers.ask_again()

    async def _round_trip(
        self, counter: str, *commands: Command, confirm: bool = False
    ) -> list[Any]:
        """``commands`` for ``counter``'s Redis, in the next write to it; their replies
        (with ``confirm``, WAIT's after them). An error reply raises, mapped by class."""
        try:
            replies = await self.nodes.pipeline_for(counter).call(commands, confirm=confirm)
            with map_redis_errors(sent=True):
                for reply in replies:
                    if isinstance(reply, redis_errors.ResponseError):
                        raise reply
            if self._misconfigured is not None:
                log.info("Redis access works again", extra={"event": "redis_access_ok"})
                self._misconfigured = None
            return replies
        except StoreMisconfigured as exc:
            reason = f"Redis is misconfigured: {exc}"
            if reason != self._misconfigured:
                log.error("%s", reason, extra={"event": "redis_misconfigured"})
            self._misconfigured = reason
            raise
        except (StoreUnavailable, StoreFull, OutcomeUnknown) as exc:
            if self.router is not None:
                # A MOVED, ASK, TRYAGAIN or CLUSTERDOWN reply, or a primary gone:
                # the slot map may be stale. This request is not retried.
                self.router.changed.set()
            elif isinstance(exc.__cause__, NoReplicasError | redis_errors.ReadOnlyError):
                await self.ask_sentinels_again()
            raise

    async def close(self) -> None:
        await self._held.close()
        await self.nodes.close()


def _increment_call(
    settings: Settings,
    batches: Sequence[tuple[str, Sequence[Increment]]],
    publish: str,
    interval_ms: int,
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of increment.lua for ``batches`` (the forms are listed there)."""
    keys: list[str] = []
    args: list[Any] = [
        publish,
        new_epoch(),
        settings.dedup_ttl,
        settings.session_ttl,
        settings.session_window,
        interval_ms,
    ]
    for counter, increments in batches:
        # Each dedup key once in the segment's keys (a connection's increments
        # share their session's); each increment names its key by index.
        key_index: dict[str, int] = {state_key(counter): 1}
        args.extend((channel_name(counter), 0, len(increments)))
        count_at = len(args) - 2
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
        args[count_at] = len(key_index)
        keys.extend(key_index)
    return keys, args


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
