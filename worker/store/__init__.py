"""The Redis adapter: the only part of the worker that talks to Redis.

``keys`` says where a counter lives, ``scripts`` holds the Lua steps,
``redis_store`` runs them through ``nodes`` (one pipeline per node; ``router``
picks a Redis Cluster's primary), ``connect`` makes every connection
(credentials, TLS),
``subscription`` and ``sharded`` follow the channels, and ``errors`` maps
redis-py's exceptions onto the worker's, by class.
"""

from __future__ import annotations

from ..core.hub import StateListener
from .pubsub import Follower
from .redis_store import RedisStore
from .sharded import ShardedSubscription
from .subscription import Subscription


def follow(store: RedisStore, listener: StateListener) -> Follower:
    """The subscription that carries counter states to this worker: one pub/sub connection
    on one Redis, one sharded connection per primary on a Redis Cluster."""
    if store.router is not None:
        return ShardedSubscription(store, listener)
    return Subscription(store, listener)


__all__ = ["Follower", "RedisStore", "ShardedSubscription", "Subscription", "follow"]
