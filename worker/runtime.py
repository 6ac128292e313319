"""The one place that picks the event loop, tunes the garbage collector and turns signals
into a shutdown, and that says which build of the worker runs.

uvloop where it is installed (CPython on Linux and macOS), plain asyncio
elsewhere, as uvicorn's ``loops/auto.py`` does.
"""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

# How many new container objects the cyclic garbage collector lets pile up before it
# collects the youngest generation. At CPython's 700 a busy worker collects it about
# a hundred times a second, and whatever is in flight at that moment (increments,
# frames, futures) is promoted to the older generations; their growth then sets off
# full collections, each walking every object of every connection while no client
# gets a frame: 100 to 170 ms at 5,000 clients. At 10,000 the objects in flight die
# young and a 10 s run at 5,000 clients has no full collection (docs/performance.md,
# "The garbage collector").
YOUNG_GENERATION_THRESHOLD = 10_000


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        # Optional: uvloop does not exist on every platform.
        import uvloop  # noqa: PLC0415
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def build() -> str:
    """Which build runs: "compiled" when the hot modules run as mypyc's extensions (setup.py,
    ``WS_COUNTER_COMPILE=1``), "pure" when they run as Python: the worker logs it and
    exports it, so that an operator can see which build an image holds."""
    # One of the compiled modules stands for them all: the build makes all or none.
    from .core import state  # noqa: PLC0415

    return "pure" if state.__file__.endswith(".py") else "compiled"


def tune_collector() -> None:
    """The cyclic garbage collector's youngest generation made YOUNG_GENERATION_THRESHOLD
    deep; the older generations keep their thresholds."""
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, oldest)


def collector_thresholds() -> list[int]:
    """The collector's thresholds, youngest generation first: the ``listening`` log says
    them, so that a test and an operator can see what ``tune_collector`` set."""
    return list(gc.get_threshold())


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on the best event loop available."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


def stop_requested() -> asyncio.Future[int]:
    """A future that SIGTERM or SIGINT completes with the signal's number.

    The handlers are in place when this returns, so a signal that arrives
    while the worker is still starting is not lost.
    """
    loop = asyncio.get_running_loop()
    received: asyncio.Future[int] = loop.create_future()

    def on_signal(signum: int) -> None:
        if not received.done():
            received.set_result(signum)

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    return received
