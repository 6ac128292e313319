"""Capped exponential backoff with full jitter, the one schedule every retry follows.

Jitter keeps workers, and the clients of a worker that restarted, from
reconnecting in step (the thundering herd after a failover).
"""

from __future__ import annotations

import random
from collections.abc import Iterator


def backoff_delays(first: float, cap: float, rng: random.Random | None = None) -> Iterator[float]:
    """Endless delays: the n-th drawn from [c/2, c], where c = min(cap, first * 2**n)."""
    uniform = (rng or random).uniform
    ceiling = first
    while True:
        yield uniform(ceiling / 2, ceiling)
        ceiling = min(cap, ceiling * 2)


def nth_delay(first: float, cap: float, attempt: int, rng: random.Random | None = None) -> float:
    """The delay before retry number ``attempt`` (0-based) without keeping a generator."""
    ceiling = backoff_ceiling(first, cap, attempt)
    return (rng or random).uniform(ceiling / 2, ceiling)


def backoff_ceiling(first: float, cap: float, attempt: int) -> float:
    """The largest delay before retry number ``attempt`` (0-based): min(cap, first * 2**n)."""
    return float(min(cap, first * 2 ** min(attempt, 64)))
