"""Background tasks, supervised: none of them dies unseen.

The event loop holds tasks only weakly and reports a failed one, if at all,
as "exception was never retrieved" when it is garbage-collected. Here:

* every task is referenced until it ends (``TaskSet``);
* a task that fails is logged once, with its traceback, under its name, and
  counted in ``FAILURES`` (``ws_counter_task_failures_total{task}``);
* a task meant to run for ever (``TaskSet.keep``) is started again after a
  failure, or after it ended at all, with capped, jittered backoff; the
  backoff starts over once a run has lasted HEALTHY_AFTER seconds.

Code that answers callers from a task of its own (the batcher, the Redis
pipeline) catches what it did not expect itself, fails those callers, and
reports it with ``report_failure``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from .core.backoff import backoff_delays

log = logging.getLogger("ws_counter.tasks")

# Failures by task name, for this process (a worker is one process).
FAILURES: Counter[str] = Counter()
# A kept task is restarted after 0.1 s, doubling to at most 5 s while it keeps failing.
RESTART_FIRST, RESTART_CAP = 0.1, 5.0
# A run that lasted this long (seconds) was healthy: the next restart is quick again.
HEALTHY_AFTER = 30.0


def report_failure(task: str, exc: BaseException) -> None:
    """Log ``exc`` once with its traceback, and count it, under ``task``."""
    FAILURES[task] += 1
    log.error(
        "background task %s failed: %r",
        task,
        exc,
        exc_info=exc,
        extra={"event": "task_failed", "task": task},
    )


def _name_of(task: asyncio.Future[Any]) -> str:
    coroutine = task.get_coro() if isinstance(task, asyncio.Task) else None
    return str(getattr(coroutine, "__qualname__", repr(task)))


class TaskSet:
    """Tasks started with ``spawn`` or ``keep``, referenced until done, cancelled together."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(
        self, coroutine: Coroutine[Any, Any, Any], name: str | None = None
    ) -> asyncio.Future[Any]:
        """Run ``coroutine`` once; a failure is reported under ``name`` (its function's)."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._ended(done, name))
        return task

    def keep(
        self, name: str, start: Callable[[], Coroutine[Any, Any, None]]
    ) -> asyncio.Future[Any]:
        """Run ``start()`` for ever: after it fails or ends, report it and start it again."""
        return self.spawn(self._supervise(name, start), name)

    async def _supervise(self, name: str, start: Callable[[], Coroutine[Any, Any, None]]) -> None:
        loop = asyncio.get_running_loop()
        delays = backoff_delays(RESTART_FIRST, RESTART_CAP)
        while True:
            began = loop.time()
            try:
                await start()
            except Exception as exc:
                report_failure(name, exc)
            else:
                report_failure(name, RuntimeError(f"{name} ended; it is meant to run for ever"))
            if loop.time() - began >= HEALTHY_AFTER:
                delays = backoff_delays(RESTART_FIRST, RESTART_CAP)
            delay = next(delays)
            log.warning(
                "restarting %s in %.2f s",
                name,
                delay,
                extra={"event": "task_restart", "task": name},
            )
            # A timer: nothing to wait on but time before the next attempt.
            await asyncio.sleep(delay)

    def _ended(self, task: asyncio.Future[Any], name: str | None) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            report_failure(name or _name_of(task), exc)

    async def cancel_all(self) -> None:
        """Cancel every task still running and wait until they have ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
