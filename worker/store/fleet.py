"""The fleet's connection counts, through Redis: each worker reports its own and reads
everyone's in one Lua step (lua/fleet.lua), on Redis' clock."""

from __future__ import annotations

from ..core.balance import STALE_AFTER
from .keys import FLEET_COUNTER, FLEET_KEY
from .redis_store import RedisStore
from .scripts import script


async def report_connections(store: RedisStore, worker: str, count: int) -> dict[str, int]:
    """Report ``count`` for ``worker``; every live worker's count (this one's included).
    Raises StoreError like any call to Redis."""
    (reply,) = await store.run_script(
        FLEET_COUNTER,
        script("fleet"),
        [FLEET_KEY],
        [worker, count, int(STALE_AFTER * 1000)],
    )
    _now, *pairs = (item.decode() if isinstance(item, bytes) else str(item) for item in reply)
    return {pairs[i]: int(pairs[i + 1]) for i in range(0, len(pairs), 2)}
