"""The Redis adapter: the only part of the worker that talks to Redis.

``keys`` says where a counter lives, ``scripts`` holds the Lua steps,
``redis_store`` runs them (``router`` picks a Redis Cluster's primary),
``subscription`` and ``sharded`` follow the channels, and ``errors`` maps
redis-py's exceptions onto the worker's, by class.
"""

from __future__ import annotations

from collections.abc import Callable

from ..core.state import CounterState
from .redis_store import RedisStore
from .sharded import ShardedSubscription
from .subscription import Subscription


def follow(
    store: RedisStore,
    on_subscribed: Callable[[str], None],
    on_state: Callable[[str, CounterState], None],
    on_connection: Callable[[bool], None],
    on_lost: Callable[[str], None],
) -> Subscription | ShardedSubscription:
    """The subscription that carries counter states to this worker: one pub/sub connection
    on one Redis, one sharded connection per primary on a Redis Cluster."""
    if store.router is not None:
        return ShardedSubscription(store, on_subscribed, on_state, on_connection, on_lost)
    return Subscription(store, on_subscribed, on_state, on_connection)


__all__ = ["RedisStore", "ShardedSubscription", "Subscription", "follow"]
