"""Capped exponential backoff with equal jitter, the one schedule every retry follows.

Each delay is drawn from [c/2, c] for the n-th ceiling c (equal jitter: half
fixed, half random), never from [0, c] (full jitter), so that no retry comes
at once after a failure. Jitter keeps workers, and the clients of a worker
that restarted, from reconnecting in step (the thundering herd after a
failover).
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


def backoff_ceiling(first: float, cap: float, attempt: int) -> float:
    """The largest delay before retry number ``attempt`` (0-based): min(cap, first * 2**n)."""
    return float(min(cap, first * 2 ** min(attempt, 64)))
