"""How far every client of a counter has got: the low-water mark of their seqs.

Shared by the load test's agents and the benchmark's raw-socket clients.
"""

from __future__ import annotations

import asyncio
import collections


class Coverage:
    """Per counter: the lowest seq every client has seen, and when each seq was passed."""

    def __init__(self) -> None:
        self.holding: collections.Counter[int] = collections.Counter()
        self.low: int | None = None
        self.reached: dict[int, float] = {}
        self.target: int | None = None
        self.at_target = asyncio.Event()

    def join(self, seq: int, now: float) -> None:
        self.holding[seq] += 1
        self._recompute(now)

    def move(self, old: int, new: int, now: float) -> None:
        self.holding[old] -= 1
        if not self.holding[old]:
            del self.holding[old]
        self.holding[new] += 1
        # A client leaving the low-water mark may raise it; one at or below it (a new
        # epoch can start below, after a failover dropped states) may too once it climbs.
        if self.low is None or old <= self.low:
            self._recompute(now)

    def _recompute(self, now: float) -> None:
        if not self.holding:
            return
        low = min(self.holding)
        if self.low is not None:
            for seq in range(self.low + 1, low + 1):
                self.reached.setdefault(seq, now)
        self.low = low if self.low is None else max(self.low, low)
        if self.target is not None and self.low >= self.target:
            self.at_target.set()

    def expect(self, target: int) -> None:
        self.target = target
        if self.low is not None and self.low >= target:
            self.at_target.set()
