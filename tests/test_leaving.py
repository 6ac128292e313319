"""Counters whose last local client left: let go after the grace, together per tick,
unless a client came back first."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ws_counter.worker.store.pubsub import Leaving

pytestmark = pytest.mark.unit

GRACE = 0.05
TICK = 0.02


class LetGo:
    """Records each counter let go, grouped by the turn of the event loop it went in."""

    def __init__(self, expected: int) -> None:
        self.turns: list[list[str]] = []
        self.times: list[float] = []
        self._expected = expected
        self._count = 0
        self.all_gone = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._turn: list[str] | None = None

    def __call__(self, counter: str) -> None:
        if self._turn is None:
            self._turn = []
            self.turns.append(self._turn)
            self.times.append(self._loop.time())
            # Called back in the next turn: what this one let go is one group.
            self._loop.call_soon(self._end_turn)
        self._turn.append(counter)
        self._count += 1
        if self._count >= self._expected:
            self.all_gone.set()

    def _end_turn(self) -> None:
        self._turn = None


def watched(expected: int) -> tuple[LetGo, Leaving]:
    """A Leaving with a short grace and tick, and what it lets go, ``expected`` counters."""
    let_go = LetGo(expected)
    return let_go, Leaving(let_go, GRACE, TICK)


async def gone(let_go: LetGo) -> None:
    await asyncio.wait_for(let_go.all_gone.wait(), 5)


async def counters_leaving_together_are_let_go_in_one_turn_after_the_grace() -> None:
    let_go, leaving = watched(expected=3)
    started = asyncio.get_running_loop().time()
    for counter in ("a", "b", "c"):
        leaving.start(counter)
    assert len(leaving) == 3
    await gone(let_go)
    assert [sorted(turn) for turn in let_go.turns] == [["a", "b", "c"]]
    assert let_go.times[0] - started >= GRACE
    assert len(leaving) == 0


async def a_counter_that_comes_back_is_not_let_go() -> None:
    let_go, leaving = watched(expected=1)
    leaving.start("stays")
    leaving.start("goes")
    assert leaving.back("stays") is True
    assert leaving.back("never-left") is False
    await gone(let_go)
    assert let_go.turns == [["goes"]]
    assert leaving.back("goes") is False  # gone: a new client subscribes afresh


async def the_last_counter_of_a_tick_coming_back_cancels_its_timer() -> None:
    let_go, leaving = watched(expected=1)
    leaving.start("back")
    assert leaving.back("back") is True
    assert len(leaving) == 0
    # The emptied tick's timer is cancelled (had it fired, its forgotten tick would
    # raise in the loop); a counter leaving later still goes, the only one let go.
    await asyncio.sleep(GRACE + TICK)
    leaving.start("later")
    await gone(let_go)
    assert let_go.turns == [["later"]]


async def starting_twice_lets_go_once() -> None:
    let_go, leaving = watched(expected=1)
    leaving.start("twice")
    leaving.start("twice")
    assert len(leaving) == 1
    await gone(let_go)
    assert let_go.turns == [["twice"]]


async def counters_a_tick_apart_go_in_separate_turns() -> None:
    let_go, leaving = watched(expected=2)
    leaving.start("first")
    await asyncio.sleep(TICK * 2)
    leaving.start("second")
    await gone(let_go)
    assert let_go.turns == [["first"], ["second"]]


async def clear_lets_nothing_go() -> None:
    let_go, leaving = watched(expected=1)
    leaving.start("a")
    leaving.clear()
    assert len(leaving) == 0
    leaving.start("b")  # the one expected: proves the cleared timer never fired
    await gone(let_go)
    assert let_go.turns == [["b"]]


SCENARIOS: list[Callable[[], Coroutine[Any, Any, None]]] = [
    counters_leaving_together_are_let_go_in_one_turn_after_the_grace,
    a_counter_that_comes_back_is_not_let_go,
    the_last_counter_of_a_tick_coming_back_cancels_its_timer,
    starting_twice_lets_go_once,
    counters_a_tick_apart_go_in_separate_turns,
    clear_lets_nothing_go,
]


async def without_callback_errors(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """``scenario``, failing if any timer callback raised meanwhile (a timer left armed
    for a tick already forgotten, say): the loop would only have logged it."""
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
    await scenario()
    assert errors == []


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.__name__)
def test_leaving(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(without_callback_errors(scenario))
