"""Sharded pub/sub on a Redis Cluster: one SSUBSCRIBE connection per primary, managed here.

Why not redis-py's cluster pub/sub: its ``get_sharded_message`` polls node
after node, each with the full timeout, so a quiet shard delays the others
(``python -m bench.pubsub_choice`` measured a p50 of 6 s with a 1 s timeout,
and a busy core with none; docs/performance.md). Here every primary has its
own connection and reader task, and a state is handled the moment its shard
delivers it: a p50 of 0.5 ms at no CPU while quiet.

Rules, on top of the ordering rules in ``ws_counter.worker.core.hub``:

* Each primary's connection also subscribes a control channel of its own
  (a name that hashes into the primary's slots): its confirmation says the
  shard's subscription is up, whether or not the worker has counters there.
* A counter's channel is subscribed on the primary that owns its slot. Its
  confirmation is ``on_subscribed`` and an announcement follows, so the
  counter's snapshot arrives through the same connection as its updates.
* When Redis pushes an SUNSUBSCRIBE for a counter still wanted (its slot was
  migrated), or a shard's connection is lost (a primary failed), each counter
  affected is ``on_lost`` and the slot map is read again; every counter is
  then subscribed on its new owner and announced again: the resync rule.
* ``on_connection`` reports whether the slot map is known and some primary's
  subscription is up: what readiness means on a cluster, where one shard
  failing over must not turn away the clients of the others.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..core.backoff import backoff_delays
from ..core.hub import StateListener
from ..core.slots import Address, channel_in_slots
from ..errors import StoreError
from ..tasks import TaskSet
from .feed import BACKOFF_CAP, BACKOFF_FIRST, Following, StateFeed
from .keys import CONTROL_CHANNEL
from .pubsub import Trouble
from .redis_store import RedisStore
from .router import ClusterRouter

log = logging.getLogger("ws_counter.store")


class Shard(StateFeed):
    """The SSUBSCRIBE connection to one primary and the counters subscribed there."""

    def __init__(self, owner: ShardedSubscription, address: Address, control: str) -> None:
        spawn = owner.tasks.spawn
        super().__init__(control, owner.store, owner.listener, owner.trouble, spawn, sharded=True)
        self.owner = owner
        self.address = address
        self.task: asyncio.Future[Any] | None = None

    def start(self) -> None:
        # A shard that fails is reported by the task set and made again by the owner
        # (shard_ended, then a reconcile): that is its supervision.
        self.task = self.owner.tasks.spawn(self.run(), "shard")

    async def run(self) -> None:
        host, port = self.address
        try:
            await self.serve(
                lambda: self.store.nodes.new_shard_pubsub(self.address),
                f"redis shard {host}:{port} lost",
                f"redis shard {host}:{port} cannot subscribe",
            )
        finally:
            self.owner.shard_ended(self)

    def on_up(self) -> None:
        super().on_up()
        self.owner.report()

    def on_control_dropped(self) -> None:
        self.owner.router.changed.set()

    def on_dropped(self, counter: str) -> None:
        # Redis moved the counter's slot away: not an unsubscribe we asked for.
        self.counters.discard(counter)
        self.listener.on_lost(counter)
        self.owner.router.changed.set()


class ShardedSubscription(Following):
    """The sharded counterpart of ``Subscription``, with the same interface."""

    def __init__(self, store: RedisStore, listener: StateListener) -> None:
        assert store.router is not None
        super().__init__()
        self.store = store
        self.router: ClusterRouter = store.router
        self.listener = listener
        self._shards: dict[Address, Shard] = {}
        self.tasks = TaskSet()
        self._up = False
        self.trouble = Trouble(plain=not store.nodes.tls)

    def feed_of(self, counter: str) -> Shard | None:
        owner = self.router.owner(counter)
        return None if owner is None else self._shards.get(owner)

    def feeds(self) -> list[Shard]:
        return list(self._shards.values())

    async def run(self) -> None:
        """Read the slot map, keep a shard per primary, and rebuild on every change."""
        delays = backoff_delays(BACKOFF_FIRST, BACKOFF_CAP)
        while True:
            self.router.changed.clear()
            try:
                await self.router.refresh()
            except StoreError as exc:
                self.trouble.failed("redis cluster unreachable", exc)
                self.report()
                await asyncio.sleep(next(delays))
                continue
            self._reconcile()
            await self.router.changed.wait()
            # A failover or migration is rarely over at its first sign: pause
            # (growing while it lasts) before reading the slot map again.
            await asyncio.sleep(next(delays))
            if all(shard.up for shard in self._shards.values()):
                delays = backoff_delays(BACKOFF_FIRST, BACKOFF_CAP)

    def _reconcile(self) -> None:
        """Every counter on the shard of its slot's owner; shards for exactly the primaries."""
        topology = self.router.topology
        assert topology is not None
        for address in list(self._shards):
            if address not in topology.primaries:
                self._close_shard(self._shards.pop(address))
        for address in topology.primaries:
            if address not in self._shards:
                control = channel_in_slots(CONTROL_CHANNEL, topology.slots_of(address))
                self._shards[address] = Shard(self, address, control)
        for counter in self.followed:
            wanted = self.feed_of(counter)
            for shard in self._shards.values():
                if shard is not wanted and counter in shard.counters:
                    shard.unfollow(counter)
                    self.listener.on_lost(counter)
            if wanted is not None and counter not in wanted.counters:
                wanted.follow(counter)
        for shard in self._shards.values():
            if shard.task is None:
                shard.start()
        self.report()

    def _close_shard(self, shard: Shard) -> None:
        for counter in shard.counters:
            self.listener.on_lost(counter)
        if shard.task is not None:
            shard.task.cancel()

    def shard_ended(self, shard: Shard) -> None:
        """A shard's connection ended: its counters wait for their new subscription."""
        for counter in shard.counters:
            self.listener.on_lost(counter)
        shard.task = None
        self.report()
        self.router.changed.set()

    def report(self) -> None:
        # Ready while the slot map is known and some shard is subscribed: a shard
        # that fails over is every worker's loss alike, and its counters' clients
        # wait for it (their subscriptions are per counter), while clients of the
        # other shards must not be turned away.
        shards = self._shards.values()
        up = self.router.topology is not None and (not shards or any(s.up for s in shards))
        if up != self._up:
            self._up = up
            self.listener.on_connection(up)

    async def close(self) -> None:
        self.stop_following()
        await self.tasks.cancel_all()
        if self._up:
            self._up = False
            self.listener.on_connection(False)
