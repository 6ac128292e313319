"""Where each counter's requests go on a Redis Cluster: the primary that owns its slot.

The topology comes from CLUSTER SLOTS, read from every known node at once,
with CLUSTER INFO: the map of a node that reaches a majority and has seen the
latest failover wins (``ws_counter.worker.core.slots.newest_view``), so a primary cut off
from the rest, which still serves its old map, is not followed back to itself.
Nothing follows a MOVED or ASK reply on its own: the increment that got it is
answered ``unavailable`` (Redis ran nothing) and ``changed`` is set, so that
the subscription side reads the topology again, moves its subscriptions and
re-announces. Retrying an
increment is the client's decision, made safe by its session or id.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool, ConnectionPool

from ..core.slots import Address, Topology, View, key_slot, newest_view, parse_cluster_info
from ..errors import StoreMisconfigured, StoreUnavailable
from .connect import REQUEST_CONNECTIONS
from .errors import map_redis_errors
from .keys import state_key
from .typed import command

log = logging.getLogger("ws_counter.store")


class ClusterRouter:
    """Connection pools per primary, and the slot map that picks one for a counter."""

    def __init__(
        self,
        seeds: tuple[Address, ...],
        options: dict[str, Any],
        subscriber_options: dict[str, Any],
    ) -> None:
        self._seeds = seeds
        self._options = options
        self._subscriber_options = subscriber_options
        self._pools: dict[tuple[Address, bool], ConnectionPool] = {}
        self.topology: Topology | None = None
        # Set when a reply or a lost connection says the slot map may be stale.
        self.changed = asyncio.Event()

    def pool(self, address: Address, *, subscriber: bool = False) -> ConnectionPool:
        pool = self._pools.get((address, subscriber))
        if pool is None:
            options = self._subscriber_options if subscriber else self._options
            host, port = address
            if subscriber:
                pool = ConnectionPool(host=host, port=port, **options)
            else:
                # As on one Redis: a few shared connections per node, waited for.
                pool = BlockingConnectionPool(
                    host=host,
                    port=port,
                    max_connections=REQUEST_CONNECTIONS,
                    timeout=options["socket_timeout"],
                    **options,
                )
            self._pools[(address, subscriber)] = pool
        return pool

    def owner(self, counter: str) -> Address | None:
        if self.topology is None:
            return None
        return self.topology.owner(key_slot(state_key(counter)))

    async def refresh(self) -> Topology:
        """Read every known node's view and follow the newest; StoreUnavailable if none has one."""
        known = sorted(self.topology.primaries) if self.topology else []
        addresses = list(dict.fromkeys([*known, *self._seeds]))
        answers = await asyncio.gather(*(self._view(a) for a in addresses), return_exceptions=True)
        topology = newest_view([answer for answer in answers if isinstance(answer, View)])
        if topology is None:
            for answer in answers:
                if isinstance(answer, StoreMisconfigured):
                    raise answer  # names the setting to fix; the others say the same
            failures = [f"{a[0]}:{a[1]}: {x}" for a, x in zip(addresses, answers, strict=True)]
            raise StoreUnavailable("no Redis Cluster node answered: " + "; ".join(failures))
        if topology != self.topology:
            log.info(
                "redis cluster topology: %d primaries",
                len(topology.primaries),
                extra={"event": "cluster_topology"},
            )
        self.topology = topology
        return topology

    async def _view(self, address: Address) -> View:
        client = aioredis.Redis(connection_pool=self.pool(address))
        # Nothing here writes: every failure means only that this node gave no view.
        with map_redis_errors(sent=False):
            info = await command(client, "CLUSTER", "INFO")
            slots = await command(client, "CLUSTER", "SLOTS")
        healthy, epoch = parse_cluster_info(str(info))
        return View(Topology.from_cluster_slots(slots), healthy, epoch)

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()
