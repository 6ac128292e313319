"""What the parts of the websockets adapter may ask of the worker that holds them.

A Protocol, so that the parts depend on this description and not on
``ws_counter.worker.server.worker``, which imports them.
"""

from __future__ import annotations

from typing import Protocol

from websockets.asyncio.server import Server

from ..batcher import Batcher
from ..metrics import Metrics
from ..settings import Settings
from ..store import Follower, RedisStore
from ..tasks import TaskSet


class WorkerContext(Protocol):
    settings: Settings
    metrics: Metrics
    tasks: TaskSet
    batcher: Batcher
    store: RedisStore
    subscription: Follower
    # The websockets server, once listening.
    server: Server | None

    def connection_count(self) -> int: ...

    @property
    def draining(self) -> bool: ...

    @property
    def redis_up(self) -> bool: ...

    @property
    def ready(self) -> bool: ...

    @property
    def at_connection_limit(self) -> bool: ...
