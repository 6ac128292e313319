"""Write coalescing: increments go to Redis in as few calls as load allows.

While no call for a counter is in flight, an increment is sent at once (in
the next turn of the event loop), so light load pays no batching delay. While
one is in flight, new increments queue; when it returns, everything queued
goes in the next call, in arrival order. One call at a time per counter keeps
each connection's increments in the order it sent them, and every increment
still gets its own outcome.

Every counter ready in one turn goes in one call to the store for each group
the store names (``group_of``: on one Redis, all of them; on a Redis Cluster,
each counter alone): one script run, one reply and one task for a thousand
counters, where a call per counter paid each of those a thousand times. Up to
4,096 increments go in one call: under fan-out load the event loop turns only
a few times a second (each pass writes to thousands of clients), and one call
per turn should carry all that arrived meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Coroutine, Hashable, Sequence
from typing import Any, Protocol

from .core.protocol import Increment
from .core.state import Outcome
from .errors import OutcomeUnknown, StoreError
from .tasks import report_failure


class IncrementStore(Protocol):
    def group_of(self, counter: str) -> Hashable: ...

    async def increment_many(
        self, batches: Sequence[tuple[str, Sequence[Increment]]]
    ) -> list[list[Outcome]]: ...


Queued = tuple[Increment, "asyncio.Future[Outcome]", float]
# One counter's part of a call: its name and its queued increments, in order.
Batch = tuple[str, list[Queued]]


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
        # Increments not yet sent, by counter; a counter is absent when it has none.
        self._queues: dict[str, deque[Queued]] = {}
        # Counters with a call in flight: their queued increments wait for it.
        self._busy: set[str] = set()
        # Counters with increments queued and no call in flight, in arrival order.
        self._ready: dict[str, None] = {}
        self._turn_scheduled = False
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, counter: str, increment: Increment) -> asyncio.Future[Outcome]:
        """Queue an increment; the future resolves to its outcome or a StoreError."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(counter)
        if queue is None:
            queue = self._queues[counter] = deque()
        queue.append((increment, future, self._clock()))
        if counter not in self._busy:
            self._mark_ready(counter)
        return future

    def _mark_ready(self, counter: str) -> None:
        self._ready[counter] = None
        self._idle.clear()
        if not self._turn_scheduled and not self._closed:
            # One task for the turn: every counter made ready before it runs joins it.
            self._turn_scheduled = True
            self._spawn(self._send_ready())

    async def _send_ready(self) -> None:
        self._turn_scheduled = False
        calls = self._take_calls()
        for call in calls[1:]:
            self._spawn(self._apply(call))
        if calls:
            await self._apply(calls[0])

    def _take_calls(self) -> list[list[Batch]]:
        """The ready counters' queued increments, split into calls: one per group, each of
        at most ``max_batch`` increments (one counter's batch is never split)."""
        ready, self._ready = self._ready, {}
        group_of = self._store.group_of
        calls: list[list[Batch]] = []
        filling: dict[Hashable, list[Batch]] = {}  # each group's newest call
        sizes: dict[Hashable, int] = {}  # how many increments it carries
        for counter in ready:
            queue = self._queues[counter]
            batch = [queue.popleft() for _ in range(min(len(queue), self._max_batch))]
            if not queue:
                del self._queues[counter]
            self._busy.add(counter)
            group = group_of(counter)
            call = filling.get(group)
            if call is None or sizes[group] + len(batch) > self._max_batch:
                call = filling[group] = []
                sizes[group] = 0
                calls.append(call)
            call.append((counter, batch))
            sizes[group] += len(batch)
        return calls

    async def _apply(self, call: list[Batch]) -> None:
        try:
            results = await self._store.increment_many(
                [(counter, [increment for increment, *_ in batch]) for counter, batch in call]
            )
            for (_, batch), outcomes in zip(call, results, strict=True):
                for (_, future, _), outcome in zip(batch, outcomes, strict=True):
                    if not future.done():
                        future.set_result(outcome)
        except StoreError as exc:
            _fail(call, exc)
        except Exception as exc:
            report_failure("batcher", exc)
            _fail(call, OutcomeUnknown(f"the worker failed while applying it: {exc!r}"))
        finally:
            self._on_answered(self._clock() - min(batch[0][2] for _, batch in call))
            self._answered(call)

    def _answered(self, call: list[Batch]) -> None:
        """The call is over: its counters may send what queued meanwhile."""
        for counter, _ in call:
            self._busy.discard(counter)
            if counter in self._queues:
                self._mark_ready(counter)
        if not self._busy and not self._queues:
            self._idle.set()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_idle(self) -> None:
        """Wait until no increment is queued or in flight."""
        await self._idle.wait()

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


def _fail(call: list[Batch], exc: StoreError) -> None:
    for _, batch in call:
        for _, future, _ in batch:
            if not future.done():
                future.set_exception(exc)
