"""States held back by the publish bound, sent when their interval is over.

An increment whose publish was held (``publish_bounded`` in lua/state.lua:
this counter's state went out less than 1/WS_PUBLISH_RATE s ago) leaves the
newest state unsent. The worker that got 'held' sends it once the interval
is over (lua/flush.lua), unless some worker's step has sent a newer one by
then, so the last state of a burst always reaches everyone. One timer per
counter and worker, whatever the number of increments held meanwhile. A
worker that stops sends its held states at once; one killed within an
interval leaves its last state to the counter's next increment or resync.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..errors import StoreError
from ..tasks import TaskSet

log = logging.getLogger("ws_counter.store")


class HeldStates:
    """A timer per counter with a held state; ``flush`` sends it, or says how long to wait."""

    def __init__(
        self,
        interval: float,
        retry_after: float,
        flush: Callable[[str, bool], Awaitable[float]],
    ) -> None:
        self._interval = interval
        self._retry_after = retry_after
        self._flush = flush
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks = TaskSet()

    def __len__(self) -> int:
        return len(self._timers)

    def hold(self, counter: str, delay: float | None = None) -> None:
        if counter not in self._timers:
            self._timers[counter] = asyncio.get_running_loop().call_later(
                self._interval if delay is None else delay, self._due, counter
            )

    def _due(self, counter: str) -> None:
        del self._timers[counter]
        self._tasks.spawn(self._send(counter))

    async def _send(self, counter: str) -> None:
        try:
            wait = await self._flush(counter, False)
        except StoreError as exc:
            # Redis did not take it: try again later. A lost subscription resyncs
            # every counter anyway, and the next increment publishes afresh.
            log.debug("held state of %s not sent: %s", counter, exc)
            self.hold(counter, self._retry_after)
            return
        if wait > 0:
            self.hold(counter, wait)

    async def close(self) -> None:
        """Send every held state now (so none waits for a timer that is gone), then stop."""
        held = list(self._timers)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        await self._tasks.cancel_all()
        results = await asyncio.gather(
            *(self._flush(counter, True) for counter in held), return_exceptions=True
        )
        for counter, result in zip(held, results, strict=True):
            if isinstance(result, BaseException):
                log.debug("held state of %s not sent on stopping: %s", counter, result)
