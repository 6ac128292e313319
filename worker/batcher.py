"""Write coalescing: a counter's increments go to Redis in as few calls as load allows.

While no call for a counter is in flight, an increment is sent at once, so
light load pays no batching delay. While one is in flight, new increments
queue; when it returns, everything queued goes in the next call, in arrival
order. Up to 4,096 go in one call: under fan-out load the event loop turns
only a few times a second (each pass writes to thousands of clients), and one
call per turn should carry all that arrived meanwhile. One call at a time per
counter keeps each connection's increments in the order it sent them, and
every increment still gets its own outcome.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from .core.protocol import Increment
from .core.state import Outcome
from .errors import OutcomeUnknown, StoreError
from .tasks import report_failure


class IncrementStore(Protocol):
    async def increment(self, counter: str, increments: list[Increment]) -> list[Outcome]: ...


Queued = tuple[Increment, "asyncio.Future[Outcome]", float]


class Batcher:
    """``on_answered(seconds)`` hears, once per call to Redis, how long its oldest increment
    waited from ``submit`` until its outcome: a latency metric that costs one observation a
    call, not one an increment."""

    def __init__(
        self,
        store: IncrementStore,
        max_batch: int = 4096,
        on_answered: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self._on_answered = on_answered
        self._clock = time.monotonic
        self._queues: dict[str, deque[Queued]] = {}
        self._flushers: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, counter: str, increment: Increment) -> asyncio.Future[Outcome]:
        """Queue an increment; the future resolves to its outcome or a StoreError."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(counter)
        if queue is None:
            queue = self._queues[counter] = deque()
            flusher = asyncio.create_task(self._flush(counter, queue))
            self._flushers.add(flusher)
            self._idle.clear()
            flusher.add_done_callback(self._flusher_done)
        queue.append((increment, future, self._clock()))
        return future

    async def _flush(self, counter: str, queue: deque[Queued]) -> None:
        try:
            while queue:
                count = min(len(queue), self._max_batch)
                batch = [queue.popleft() for _ in range(count)]
                await self._apply(counter, batch)
        finally:
            del self._queues[counter]

    async def _apply(self, counter: str, batch: list[Queued]) -> None:
        try:
            outcomes = await self._store.increment(counter, [increment for increment, *_ in batch])
        except StoreError as exc:
            _fail(batch, exc)
            return
        except Exception as exc:
            report_failure("batcher", exc)
            _fail(batch, OutcomeUnknown(f"the worker failed while applying it: {exc!r}"))
            return
        finally:
            self._on_answered(self._clock() - batch[0][2])
        for (_, future, _), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)

    def _flusher_done(self, flusher: asyncio.Task[None]) -> None:
        self._flushers.discard(flusher)
        if not self._flushers:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Wait until no increment is queued or in flight."""
        await self._idle.wait()

    async def close(self) -> None:
        for flusher in list(self._flushers):
            flusher.cancel()
        if self._flushers:
            await asyncio.wait(self._flushers)


def _fail(batch: list[Queued], exc: StoreError) -> None:
    for _, future, _ in batch:
        if not future.done():
            future.set_exception(exc)
