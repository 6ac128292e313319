"""Background tasks kept alive until they finish: the event loop holds tasks only weakly."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("ws_counter.tasks")


class TaskSet:
    """Tasks started with ``spawn``, referenced until done, cancelled together.

    A task that fails is logged once, with its traceback, when it ends: never
    left for the loop to report as "exception was never retrieved" at garbage
    collection, or not at all.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            coroutine = task.get_coro() if isinstance(task, asyncio.Task) else None
            name = getattr(coroutine, "__qualname__", repr(task))
            log.error(
                "background task %s failed: %r",
                name,
                exc,
                exc_info=exc,
                extra={"event": "task_failed", "task": name},
            )

    async def cancel_all(self) -> None:
        """Cancel every task still running and wait until they have ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
