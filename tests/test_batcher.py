"""The batcher's calls: every counter ready in a turn in one call per group, at most
``max_batch`` increments each, one call in flight per counter, increments in order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence

import pytest

from ws_counter.worker.batcher import Batcher
from ws_counter.worker.core.protocol import Increment
from ws_counter.worker.core.state import Applied, CounterState, Outcome
from ws_counter.worker.errors import StoreUnavailable

pytestmark = pytest.mark.unit


class Totals:
    """A store in memory: counters named ``group/name`` share a call within their group.
    Each call waits for ``release`` before it answers, so a test decides when calls return;
    a counter named ``*/down`` fails its whole call."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self.calls: list[list[tuple[str, list[int]]]] = []
        self.release = asyncio.Event()

    def group_of(self, counter: str) -> Hashable:
        return counter.split("/", maxsplit=1)[0]

    async def increment_many(
        self, batches: Sequence[tuple[str, Sequence[Increment]]]
    ) -> list[list[Outcome]]:
        self.calls.append([(counter, [inc.by for inc in incs]) for counter, incs in batches])
        await self.release.wait()
        if any(counter.endswith("/down") for counter, _ in batches):
            raise StoreUnavailable("this call's node is down")
        results: list[list[Outcome]] = []
        for counter, increments in batches:
            outcomes: list[Outcome] = []
            for increment in increments:
                total = self.totals[counter] = self.totals.get(counter, 0) + increment.by
                outcomes.append(Applied(CounterState("e", total, total)))
            results.append(outcomes)
        return results


def run(scenario: Callable[[Totals, Batcher], Awaitable[None]], max_batch: int = 4096) -> None:
    """``scenario`` against a fresh store and batcher; then the batcher must fall idle."""

    async def main() -> None:
        store = Totals()
        batcher = Batcher(store, max_batch=max_batch)
        try:
            await scenario(store, batcher)
            await batcher.wait_idle()
        finally:
            await batcher.close()

    asyncio.run(asyncio.wait_for(main(), 10))


def test_a_turns_counters_go_in_one_call_per_group() -> None:
    async def scenario(store: Totals, batcher: Batcher) -> None:
        futures = [batcher.submit(c, Increment(by=1)) for c in ("a/1", "b/1", "a/2", "a/1")]
        store.release.set()
        await asyncio.gather(*futures)
        assert store.calls == [[("a/1", [1, 1]), ("a/2", [1])], [("b/1", [1])]]

    run(scenario)


def test_a_call_carries_at_most_max_batch_and_never_splits_a_counter() -> None:
    async def scenario(store: Totals, batcher: Batcher) -> None:
        futures = [batcher.submit("a/1", Increment(by=n)) for n in range(1, 6)]
        futures += [batcher.submit(c, Increment(by=1)) for c in ("a/2", "a/3", "a/4")]
        store.release.set()
        await asyncio.gather(*futures)
        assert store.calls == [
            [("a/1", [1, 2, 3, 4])],
            [("a/2", [1]), ("a/3", [1]), ("a/4", [1])],
            [("a/1", [5])],
        ]

    run(scenario, max_batch=4)


def test_increments_that_arrive_during_a_call_go_in_the_next_in_order() -> None:
    async def scenario(store: Totals, batcher: Batcher) -> None:
        first = batcher.submit("a/1", Increment(by=1))
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # the first call is now in flight
        later = [batcher.submit("a/1", Increment(by=n)) for n in (2, 3)]
        other = batcher.submit("a/2", Increment(by=7))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert store.calls == [[("a/1", [1])], [("a/2", [7])]]
        store.release.set()
        outcomes = await asyncio.gather(first, *later, other)
        assert [o.state.total for o in outcomes if isinstance(o, Applied)] == [1, 3, 6, 7]
        assert store.calls[2:] == [[("a/1", [2, 3])]]

    run(scenario)


def test_a_failed_call_fails_its_counters_alone() -> None:
    async def scenario(store: Totals, batcher: Batcher) -> None:
        down = batcher.submit("a/down", Increment(by=1))
        beside = batcher.submit("a/1", Increment(by=1))
        elsewhere = batcher.submit("b/1", Increment(by=1))
        store.release.set()
        results = await asyncio.gather(down, beside, elsewhere, return_exceptions=True)
        assert isinstance(results[0], StoreUnavailable)
        assert results[1] is results[0]  # one step: its failure is every counter's
        assert isinstance(results[2], Applied)
        again = await batcher.submit("a/1", Increment(by=2))
        assert isinstance(again, Applied) and again.state.total == 2

    run(scenario)
