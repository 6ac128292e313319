"""Closing a draining worker's clients over a window instead of all at once.

Every client closed with 1012 reconnects at once, to the workers that stay:
closing a full worker's 20,000 in one go is a reconnect storm against them.
Spread over WS_DRAIN_SPREAD seconds, in slices a tick apart, the reconnects
arrive at the rate the others take new clients anyway.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import TypeVar

# Slices are this far apart: fine enough to look even, coarse enough to cost nothing.
TICK = 0.05

Connection = TypeVar("Connection")


def slices(count: int, seconds: float, tick: float = TICK) -> list[int]:
    """How many of ``count`` connections to close in each slice of a ``seconds`` window:
    slices at least a tick apart, as even as whole numbers allow."""
    if count <= 0:
        return []
    ticks = max(1, min(count, math.floor(seconds / tick + 1e-9)))
    base, extra = divmod(count, ticks)
    return [base + (1 if index < extra else 0) for index in range(ticks)]


async def close_over(
    connections: Sequence[Connection], seconds: float, close: Callable[[Connection], object]
) -> None:
    """Call ``close`` on every connection, spread over ``seconds``: slices an equal time
    apart (at least a tick), the first at once."""
    plan = slices(len(connections), seconds)
    interval = seconds / len(plan) if plan else 0.0
    start = 0
    for index, size in enumerate(plan):
        if index:
            # A timer between slices: nothing to wait on but time.
            await asyncio.sleep(interval)
        for connection in connections[start : start + size]:
            close(connection)
        start += size
