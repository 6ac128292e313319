"""Background tasks: a failure is logged once with its cause, never left unseen."""

from __future__ import annotations

import asyncio
import logging

import pytest

from worker.tasks import TaskSet

pytestmark = pytest.mark.unit


async def fails() -> None:
    raise AttributeError("'NoneType' object has no attribute 'startswith'")


def test_a_failed_task_is_logged_with_its_name_and_cause(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        tasks = TaskSet()
        task = tasks.spawn(fails())
        await asyncio.wait([task])
        await asyncio.sleep(0)  # done callbacks run in the next turn
        assert len(tasks) == 0

    with caplog.at_level(logging.ERROR, logger="ws_counter.tasks"):
        asyncio.run(scenario())
    (record,) = [r for r in caplog.records if r.name == "ws_counter.tasks"]
    assert "fails" in record.getMessage() and "startswith" in record.getMessage()
    assert record.exc_info is not None
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


def test_a_cancelled_task_is_not_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        tasks = TaskSet()
        tasks.spawn(asyncio.sleep(60))
        await tasks.cancel_all()
        await asyncio.sleep(0)

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    assert not caplog.records
