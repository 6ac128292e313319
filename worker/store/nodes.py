"""The Redis nodes a worker talks to, and its connections to each.

On one Redis (or the master the Sentinels name) there is a client for
requests and one for the subscription, which blocks on reads indefinitely
(its PING when silent notices a peer that vanished without closing). On a
Redis Cluster the router keeps pools per node. Either way requests go out
through one pipeline per node.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import ConnectionPool

from ..core.slots import Address
from ..errors import StoreUnavailable
from ..settings import Settings
from .connect import REQUEST_CONNECTIONS, new_client, pool_options, sentinel_options, uses_tls
from .pipeline import Pipeline
from .router import ClusterRouter
from .sentinel import FailoverWatch


class Nodes:
    """Clients, pools and pipelines of the one Redis, the Sentinels' master or a cluster."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.tls = uses_tls(settings)
        self.router: ClusterRouter | None = None
        self.failovers: FailoverWatch | None = None
        self._clients: tuple[aioredis.Redis, aioredis.Redis] | None = None
        self._pipeline: Pipeline | None = None
        self._pipelines: dict[Address, Pipeline] = {}
        if settings.redis_cluster_nodes:
            self.router = ClusterRouter(
                settings.redis_cluster_nodes,
                pool_options(settings, settings.redis_timeout),
                pool_options(settings, None),
            )
            return
        requests = new_client(settings, socket_timeout=settings.redis_timeout)
        subscriber = new_client(settings, socket_timeout=None)
        self._clients = (requests, subscriber)
        self._pipeline = self._new_pipeline(requests.connection_pool)
        if settings.redis_sentinels:
            self.failovers = FailoverWatch(
                settings.redis_sentinels,
                settings.redis_master_name,
                sentinel_options(settings, None),
                [client.connection_pool for client in self._clients],
                settings.redis_timeout,
            )

    def pipeline_for(self, counter: str) -> Pipeline:
        """The pipeline of the node that holds ``counter`` now."""
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
        for pipeline in [self._pipeline, *self._pipelines.values()]:
            if pipeline is not None:
                await pipeline.close()
        for client in self._clients or ():
            await client.aclose()
        if self.router is not None:
            await self.router.close()
