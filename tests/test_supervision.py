"""Each long-running task of a worker, given an exception it did not expect, against real
Redis servers: the failure is logged once with its cause, counted in
ws_counter_task_failures_total, and the task runs again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ws_counter.tools.rediscluster import RedisClusterProcesses
from ws_counter.worker import tasks
from ws_counter.worker.batcher import Batcher
from ws_counter.worker.core.protocol import Increment
from ws_counter.worker.core.state import Applied
from ws_counter.worker.errors import OutcomeUnknown
from ws_counter.worker.settings import load_settings
from ws_counter.worker.store import RedisStore, ShardedSubscription, Subscription
from ws_counter.worker.store.sharded import Shard
from ws_counter.worker.tasks import FAILURES, TaskSet

from .conftest import RedisServer, seconds
from .sentinel import SentinelSet
from .test_subscription import Listener


@pytest.fixture(autouse=True)
def quick_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "RESTART_FIRST", 0.05)


class Calls:
    """Calls of a method wrapped by ``spy``: counted, and awaitable by count."""

    def __init__(self) -> None:
        self.count = 0
        self._waiters: list[tuple[int, asyncio.Event]] = []

    def called(self) -> None:
        self.count += 1
        for target, event in self._waiters:
            if self.count >= target:
                event.set()

    async def reach(self, target: int) -> None:
        event = asyncio.Event()
        self._waiters.append((target, event))
        if self.count >= target:
            event.set()
        await event.wait()


def spy(
    monkeypatch: pytest.MonkeyPatch, owner: type, name: str, *, fail_first: bool = True
) -> Calls:
    """Count calls of ``owner.name``; with ``fail_first``, the first raises RuntimeError."""
    original = getattr(owner, name)
    calls = Calls()

    def wrapper(self: object, *args: Any, **kwargs: Any) -> Any:
        calls.called()
        if fail_first and calls.count == 1:
            raise RuntimeError(f"injected into {name}")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return calls


def assert_reported(caplog: pytest.LogCaptureFixture, task: str, before: int) -> None:
    logged = [r for r in caplog.records if getattr(r, "event", None) == "task_failed"]
    assert [r.task for r in logged] == [task], [r.getMessage() for r in logged]  # type: ignore[attr-defined]
    assert "injected" in logged[0].getMessage() and logged[0].exc_info is not None
    assert FAILURES[task] == before + 1


def test_the_subscription_on_one_redis_is_restarted(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = spy(monkeypatch, Subscription, "subscribe_all")
    before = FAILURES["subscription"]
    stores: list[RedisStore] = []

    async def until_up_again() -> None:
        store = RedisStore(load_settings({"REDIS_URL": redis_server.url}))
        stores.append(store)
        listener = Listener()
        subscription = Subscription(store, listener)
        group = TaskSet()
        group.keep("subscription", subscription.run)
        try:
            await listener.up.wait()
        finally:
            await group.cancel_all()
            await subscription.close()
            await store.close()

    with caplog.at_level(logging.WARNING):
        asyncio.run(asyncio.wait_for(until_up_again(), seconds(30)))
    assert calls.count == 2
    assert_reported(caplog, "subscription", before)


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcesses]:
    cluster = RedisClusterProcesses(3, tmp_path_factory.mktemp("cluster")).start()
    yield cluster
    cluster.stop()


def test_a_shard_of_the_sharded_subscription_is_made_again(
    redis_cluster: RedisClusterProcesses,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = spy(monkeypatch, Shard, "subscribe_all")
    ups = spy(monkeypatch, Shard, "on_up", fail_first=False)
    before = FAILURES["shard"]

    async def scenario() -> list[bool]:
        store = RedisStore(load_settings({"REDIS_CLUSTER_NODES": redis_cluster.seeds}))
        listener = Listener()
        subscription = ShardedSubscription(store, listener)
        group = TaskSet()
        group.keep("subscription", subscription.run)
        try:
            # Three shards subscribed, the failed one made again by the owner: three up.
            await calls.reach(4)
            await ups.reach(3)
            return [shard.up for shard in subscription._shards.values()]
        finally:
            await group.cancel_all()
            await subscription.close()
            await store.close()

    with caplog.at_level(logging.WARNING):
        shards = asyncio.run(asyncio.wait_for(scenario(), seconds(30)))
    assert shards == [True, True, True]
    assert_reported(caplog, "shard", before)


def test_the_sentinel_watch_is_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sentinels = SentinelSet(tmp_path).start()
    calls = spy(monkeypatch, RedisStore, "watch_failovers")
    before = FAILURES["sentinel_watch"]
    try:

        async def scenario() -> None:
            store = RedisStore(load_settings(sentinels.worker_env()))
            assert store.follows_failovers
            group = TaskSet()
            group.keep("sentinel_watch", store.watch_failovers)
            try:
                await calls.reach(2)
                await asyncio.sleep(0.5)  # the second run lasts: it watches
                assert len(group) == 1
            finally:
                await group.cancel_all()
                await store.close()

        with caplog.at_level(logging.WARNING):
            asyncio.run(asyncio.wait_for(scenario(), seconds(30)))
    finally:
        sentinels.stop()
    assert_reported(caplog, "sentinel_watch", before)


def test_the_batcher_answers_a_batch_it_failed_and_goes_on(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected error applying a batch: its callers hear `unknown` (it may have been
    sent), the failure is reported, and the next increment is applied."""
    spy(monkeypatch, RedisStore, "increment_many")
    before = FAILURES["batcher"]

    async def scenario() -> tuple[BaseException | None, object]:
        store = RedisStore(load_settings({"REDIS_URL": redis_server.url}))
        batcher = Batcher(store)
        try:
            first = batcher.submit("supervised-batch", Increment(by=1))
            await asyncio.wait([first])
            second = await batcher.submit("supervised-batch", Increment(by=2))
            return first.exception(), second
        finally:
            await batcher.close()
            await store.close()

    with caplog.at_level(logging.WARNING):
        failed, applied = asyncio.run(asyncio.wait_for(scenario(), seconds(30)))
    assert isinstance(failed, OutcomeUnknown)
    assert isinstance(applied, Applied)
    assert_reported(caplog, "batcher", before)
