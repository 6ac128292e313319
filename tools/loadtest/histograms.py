"""Latency histograms of the load test, alike in every process so they can be merged."""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

# An hour in microseconds, at three significant digits.
HISTOGRAM_MAX_US = 3_600_000_000


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, HISTOGRAM_MAX_US, 3)
