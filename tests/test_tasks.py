"""Background tasks are supervised: a failure is logged once with its cause, counted, and a
task meant to run for ever is restarted."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ws_counter.worker import tasks
from ws_counter.worker.tasks import FAILURES, TaskSet

pytestmark = pytest.mark.unit


async def fails() -> None:
    raise AttributeError("'NoneType' object has no attribute 'startswith'")


def failures_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == "task_failed"]


def test_a_failed_task_is_logged_with_its_name_and_cause_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = FAILURES["fails"]

    async def scenario() -> None:
        group = TaskSet()
        task = group.spawn(fails())
        await asyncio.wait([task])
        await asyncio.sleep(0)  # done callbacks run in the next turn
        assert len(group) == 0

    with caplog.at_level(logging.ERROR, logger="ws_counter.tasks"):
        asyncio.run(scenario())
    (record,) = failures_logged(caplog)
    assert "fails" in record.getMessage() and "startswith" in record.getMessage()
    assert record.exc_info is not None
    assert FAILURES["fails"] == before + 1
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


def test_a_cancelled_task_is_not_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        group = TaskSet()
        group.spawn(asyncio.sleep(60))
        await group.cancel_all()
        await asyncio.sleep(0)

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    assert not caplog.records


@pytest.mark.parametrize("how", ["raises", "returns"])
def test_a_kept_task_is_restarted_after_it_fails_or_ends(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """The first run fails (or returns); the supervisor reports it, waits its backoff and
    starts it again; the second run lasts."""
    monkeypatch.setattr(tasks, "RESTART_FIRST", 0.01)
    name = f"kept-{how}"
    before = FAILURES[name]

    async def scenario() -> int:
        runs = 0
        second = asyncio.Event()

        async def run() -> None:
            nonlocal runs
            runs += 1
            if runs == 1:
                if how == "raises":
                    raise RuntimeError("injected")
                return
            second.set()
            await asyncio.Event().wait()  # runs for ever, as it should

        group = TaskSet()
        group.keep(name, run)
        await asyncio.wait_for(second.wait(), 5)
        await group.cancel_all()
        return runs

    with caplog.at_level(logging.WARNING, logger="ws_counter.tasks"):
        assert asyncio.run(scenario()) == 2
    (record,) = failures_logged(caplog)
    assert name in record.getMessage()
    assert ("injected" if how == "raises" else "meant to run for ever") in record.getMessage()
    assert FAILURES[name] == before + 1
    assert [r for r in caplog.records if getattr(r, "event", None) == "task_restart"]
