"""The Redis adapter: the only part of the worker that talks to Redis.

``keys`` says where a counter lives, ``scripts`` holds the Lua steps,
``redis_store`` runs them, ``subscription`` follows the channels, and
``errors`` maps redis-py's exceptions onto the worker's, by class.
"""

from __future__ import annotations

from .redis_store import RedisStore
from .subscription import Subscription

__all__ = ["RedisStore", "Subscription"]
