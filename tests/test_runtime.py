"""The worker's process-wide tuning: the garbage collector's thresholds."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from ws_counter.worker import runtime

pytestmark = pytest.mark.unit


@pytest.fixture
def thresholds() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    try:
        yield before
    finally:
        gc.set_threshold(*before)


def test_tune_collector_raises_the_youngest_threshold_only(
    thresholds: tuple[int, int, int],
) -> None:
    _, middle, oldest = thresholds
    runtime.tune_collector()
    assert gc.get_threshold() == (runtime.YOUNG_GENERATION_THRESHOLD, middle, oldest)
    assert runtime.collector_thresholds() == [runtime.YOUNG_GENERATION_THRESHOLD, middle, oldest]
    assert thresholds[0] < runtime.YOUNG_GENERATION_THRESHOLD
