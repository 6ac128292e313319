"""Connections follow capacity: when a worker holds more than its share.

A load balancer places new connections only; WebSockets stay where they
landed. After workers are added, the old ones would keep their clients for
as long as those stay. So each worker reports its connection count to Redis
every BALANCE_PERIOD seconds and reads everyone's, and one that holds more
than the fleet's mean by over TOLERANCE closes its surplus, gently:

* a live worker is one whose report is at most STALE_AFTER seconds old (on
  Redis' clock: the Lua step reports and reads in one, and drops the rest);
* the surplus is what is over the mean (never below the mean);
* at most WS_REBALANCE_RATE of its connections a minute, spread over the
  period (a client closed with 1012 reconnects through the balancer, which
  sends it to a worker with fewer);
* nothing moves while the fleet is one worker, or while the report is old.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

# Seconds between two reports of a worker's connection count.
BALANCE_PERIOD = 5.0
# A report older than this (seconds) is a worker gone.
STALE_AFTER = 3 * BALANCE_PERIOD
# Within this fraction over the mean, a worker is balanced.
TOLERANCE = 0.1


def surplus(own: int, fleet: Mapping[str, int]) -> int:
    """Connections this worker holds over the fleet's mean, once over TOLERANCE; else 0."""
    if len(fleet) < 2:
        return 0
    mean = sum(fleet.values()) / len(fleet)
    if own <= mean * (1 + TOLERANCE):
        return 0
    return math.floor(own - mean)


def allowance(own: int, rate_per_minute: float, period: float = BALANCE_PERIOD) -> int:
    """The most connections to close in one period: ``rate_per_minute`` of ``own`` a minute."""
    return math.floor(own * rate_per_minute * period / 60.0)


def to_close(own: int, fleet: Mapping[str, int], rate_per_minute: float) -> int:
    """How many connections to close this period."""
    return min(surplus(own, fleet), allowance(own, rate_per_minute))
