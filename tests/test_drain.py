"""Closing a draining worker's clients over a window (worker/server/drain.py), and how the
load test counts connections a second: pure logic, table tests."""

from __future__ import annotations

import pytest

from ws_counter.tools.loadtest.report import peak_per_second
from ws_counter.worker.server.drain import TICK, slices

pytestmark = pytest.mark.unit

# (connections, window in seconds, connections closed at each tick)
SLICES: list[tuple[int, float, list[int]]] = [
    (0, 10.0, []),
    (5, 0.0, [5]),
    (3, 10.0, [1, 1, 1]),
    (10, 0.2, [3, 3, 2, 2]),
    (7, 0.1, [4, 3]),
    (20_000, 10.0, [100] * 200),
]


@pytest.mark.parametrize(("count", "seconds", "expected"), SLICES)
def test_closes_are_spread_evenly_over_the_window(
    count: int, seconds: float, expected: list[int]
) -> None:
    plan = slices(count, seconds)
    assert plan == expected
    assert sum(plan) == count
    assert (len(plan) - 1) * TICK < max(seconds, TICK)


# (moments in seconds, the most within any one second)
PEAKS: list[tuple[list[float], int]] = [
    ([], 0),
    ([5.0], 1),
    ([1.0, 1.5, 1.99, 2.0, 2.5], 3),
    ([0.0, 0.999, 1.0], 2),
    ([3.0, 1.0, 2.0, 1.2], 2),
]


@pytest.mark.parametrize(("times", "peak"), PEAKS)
def test_the_peak_counts_a_sliding_second(times: list[float], peak: int) -> None:
    assert peak_per_second(times) == peak
