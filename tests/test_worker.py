"""Workers as real processes against a real redis-server, driven over real sockets."""

from __future__ import annotations

import asyncio
import gc
import json
import random
import signal
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ws_counter.worker.core.protocol import INT64_MAX, INT64_MIN
from ws_counter.worker.runtime import YOUNG_GENERATION_THRESHOLD

from .clients import Follower, counter_url, receive, receive_until
from .conftest import RedisServer, StartWorker, WorkerProcess, http_get, seconds


def test_increments_spread_over_workers_reach_every_client_exactly(
    start_worker: StartWorker, counter_name: str
) -> None:
    """30 clients on 3 workers send 600 increments; all end at the exact total and seq, in order."""
    workers = [start_worker() for _ in range(3)]

    async def scenario() -> None:
        followers = []
        for index in range(30):
            connection = await connect(counter_url(workers[index % 3], counter_name))
            followers.append(Follower(connection))
        tasks = [asyncio.create_task(f.follow()) for f in followers]
        rng = random.Random(3)
        plan = [[rng.randint(-1000, 1000) for _ in range(20)] for _ in followers]
        for follower, numbers in zip(followers, plan, strict=True):
            for number in numbers:
                await follower.connection.send(str(number))
        expected = sum(map(sum, plan))
        for follower in followers:
            await follower.wait_for_seq(600, acks=20)
        for follower in followers:
            assert follower.totals[-1] == expected
            assert follower.seqs == sorted(set(follower.seqs)), "a client saw seq go down"
            assert len(follower.acks) == 20
        all_ack_seqs = sorted(a["seq"] for f in followers for a in f.acks)
        assert all_ack_seqs == list(range(1, 601))
        for follower in followers:
            await follower.connection.close()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())


def test_clients_joining_during_increments_never_see_an_older_total(
    start_worker: StartWorker, counter_name: str
) -> None:
    """A snapshot on open is never followed by an older fan-out message."""
    # One writer sends faster than the per-connection rate limit allows.
    workers = [start_worker(WS_RATE_LIMIT="0") for _ in range(2)]

    async def scenario() -> None:
        writer = await connect(counter_url(workers[0], counter_name))
        await receive(writer)
        joiners: list[Follower] = []
        tasks = []
        for round_number in range(40):
            for _ in range(10):
                await writer.send("1")
            follower = Follower(await connect(counter_url(workers[round_number % 2], counter_name)))
            joiners.append(follower)
            tasks.append(asyncio.create_task(follower.follow()))
        for follower in joiners:
            await follower.wait_for_seq(400)
            assert follower.seqs == sorted(set(follower.seqs))
            assert follower.totals[-1] == 400
            await follower.connection.close()
        await writer.close()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())


BAD_FRAMES: list[tuple[str | bytes, str]] = [
    ("hello", "invalid_message"),
    ('{"op": "reset"}', "unknown_op"),
    ('{"op": "incr"}', "missing_by"),
    ('{"op": "incr", "by": "3"}', "invalid_by"),
    ('{"op": "incr", "by": 2.5}', "invalid_by"),
    (str(INT64_MAX + 1), "out_of_range"),
    (b"\x01\x02", "binary_not_supported"),
    ('{"op": "incr", "by": 1, "id": ""}', "invalid_id"),
]


def test_bad_input_gets_errors_and_never_changes_the_total(
    start_worker: StartWorker, counter_name: str
) -> None:
    """Each bad frame gets its error code, the connection stays open and the total is unchanged."""
    worker = start_worker()

    async def scenario() -> None:
        async with connect(counter_url(worker, counter_name)) as connection:
            first = await receive(connection)
            assert first["type"] == "total" and first["counter"] == counter_name
            await connection.send("7")
            await receive_until(connection, lambda m: m["type"] == "ack")
            for frame, code in BAD_FRAMES:
                await connection.send(frame)
                error = await receive_until(connection, lambda m: m["type"] == "error")
                assert error["code"] == code, frame
                assert error["message"]
            await connection.send('{"op": "incr", "by": 1, "id": "after"}')
            ack = await receive_until(connection, lambda m: m["type"] == "ack")
            assert (ack["total"], ack["seq"], ack["id"]) == (8, 2, "after")

    asyncio.run(scenario())


def test_oversized_frame_closes_with_1009(start_worker: StartWorker, counter_name: str) -> None:
    """A frame over the size limit closes the connection with 1009 and the worker keeps serving."""
    worker = start_worker()

    async def scenario() -> None:
        connection = await connect(counter_url(worker, counter_name), max_size=None)
        await receive(connection)
        await connection.send("1" * 5000)
        with pytest.raises(ConnectionClosed):
            await receive_until(connection, lambda m: False)
        assert connection.close_code == 1009
        async with connect(counter_url(worker, counter_name)) as again:
            assert (await receive(again))["total"] == 0

    asyncio.run(scenario())


def test_totals_are_exact_across_the_int64_range_and_overflow_is_refused(
    start_worker: StartWorker, counter_name: str
) -> None:
    """Totals near ±2^63 stay exact (no float on the way); an overflow is an error, not a wrap."""
    worker = start_worker()

    async def incr(connection: ClientConnection, by: int) -> dict[str, Any]:
        await connection.send(json.dumps({"op": "incr", "by": by}))
        return await receive_until(connection, lambda m: m["type"] in ("ack", "error"))

    async def scenario() -> None:
        async with connect(counter_url(worker, counter_name)) as connection:
            await receive(connection)
            assert (await incr(connection, INT64_MAX - 1))["total"] == INT64_MAX - 1
            assert (await incr(connection, 1))["total"] == INT64_MAX
            overflow = await incr(connection, 1)
            assert overflow["type"] == "error" and overflow["code"] == "overflow"
            assert (await incr(connection, -(2**53) - 1))["total"] == INT64_MAX - 2**53 - 1
            assert (await incr(connection, INT64_MIN))["total"] == -(2**53) - 2
            under = await incr(connection, INT64_MIN)
            assert under["code"] == "overflow"
            final = await incr(connection, 0)
            assert (final["total"], final["seq"]) == (-(2**53) - 2, 5)

    asyncio.run(scenario())


def test_named_counters_are_independent(start_worker: StartWorker, counter_name: str) -> None:
    """Increments of one counter never show up in another; / and /counters/default are one."""
    worker = start_worker()

    async def scenario() -> None:
        async with (
            connect(counter_url(worker, counter_name + "-a")) as a,
            connect(counter_url(worker, counter_name + "-b")) as b,
        ):
            await receive(a)
            await receive(b)
            await a.send("5")
            await receive_until(a, lambda m: m["type"] == "ack")
            await b.send("-2")
            # The ack and the total of one increment may come in either order.
            seen = [await receive(b), await receive(b)]
            ack_b = next(m for m in seen if m["type"] == "ack")
            total_b = next(m for m in seen if m["type"] == "total")
            assert (ack_b["total"], ack_b["seq"]) == (-2, 1)
            assert (total_b["counter"], total_b["total"]) == (counter_name + "-b", -2)
            with pytest.raises(TimeoutError):
                await receive_until(b, lambda m: m["total"] == 5, timeout=0.5)
        async with connect(worker.url) as root, connect(counter_url(worker, "default")) as named:
            root_state = await receive(root)
            named_state = await receive(named)
            assert root_state["counter"] == named_state["counter"] == "default"
            assert root_state["epoch"] == named_state["epoch"]

    asyncio.run(scenario())


def test_duplicate_id_gets_the_original_ack(start_worker: StartWorker, counter_name: str) -> None:
    """A retried id is applied once and answered with its first total and seq, marked duplicate."""
    worker = start_worker()

    async def scenario() -> None:
        async with connect(counter_url(worker, counter_name)) as connection:
            await receive(connection)
            frame = json.dumps({"op": "incr", "by": 4, "id": "retry-me"})
            await connection.send(frame)
            first = await receive_until(connection, lambda m: m["type"] == "ack")
            await connection.send("1")
            await receive_until(connection, lambda m: m["type"] == "ack")
            await connection.send(frame)
            again = await receive_until(connection, lambda m: m["type"] == "ack")
            assert (again["total"], again["seq"], again["duplicate"]) == (4, 1, True)
            assert "duplicate" not in first

    asyncio.run(scenario())


def test_resume_with_since_reports_missed_updates(
    start_worker: StartWorker, counter_name: str
) -> None:
    """A client connecting with ?since=S gets the current total and whether it missed updates."""
    worker = start_worker()

    async def scenario() -> None:
        async with connect(counter_url(worker, counter_name)) as connection:
            await receive(connection)
            for _ in range(3):
                await connection.send("1")
            # The ack comes over Redis' command connection and the total over
            # pub/sub: wait for the total, so this worker holds seq 3.
            await receive_until(connection, lambda m: m["type"] == "total" and m["seq"] == 3)
            async with connect(counter_url(worker, counter_name, "?since=3")) as current:
                assert (await receive(current))["missed"] is False
            async with connect(counter_url(worker, counter_name, "?since=1")) as behind:
                message = await receive(behind)
                assert (message["missed"], message["seq"], message["total"]) == (True, 3, 3)

    asyncio.run(scenario())


def test_http_endpoints(start_worker: StartWorker) -> None:
    """/healthz and /readyz answer 200; unknown paths 404; bad counter names 400; pages on GET."""
    worker = start_worker()
    assert http_get(worker.http + "/healthz")[0] == 200
    assert http_get(worker.http + "/readyz")[0] == 200
    assert http_get(worker.http + "/nowhere")[0] == 404
    assert http_get(worker.http + "/counters/Bad!")[0] == 400
    status, body = http_get(worker.http + "/counters/page-test")
    assert status == 200 and "page-test" in body

    async def handshake(path: str) -> int:
        with pytest.raises(InvalidStatus) as caught:
            await connect(worker.url.rstrip("/") + path)
        return caught.value.response.status_code

    assert asyncio.run(handshake("/nowhere")) == 404
    assert asyncio.run(handshake("/counters/UPPER")) == 400


def test_connection_limit_answers_503(start_worker: StartWorker, counter_name: str) -> None:
    """Handshakes beyond the per-worker connection limit get HTTP 503, not a hang."""
    worker = start_worker(WS_MAX_CONNECTIONS="2")

    async def scenario() -> None:
        async with (
            connect(counter_url(worker, counter_name)),
            connect(counter_url(worker, counter_name)),
        ):
            with pytest.raises(InvalidStatus) as caught:
                await connect(counter_url(worker, counter_name), open_timeout=seconds(5))
            assert caught.value.response.status_code == 503

    asyncio.run(scenario())


def test_sigterm_drains_with_1012_while_other_workers_clients_stay(
    start_worker: StartWorker, counter_name: str
) -> None:
    """SIGTERM: readyz 503, clients closed with 1012, exit 0; another worker's clients carry on."""
    leaving, staying = start_worker(), start_worker()

    async def scenario() -> None:
        gone = await connect(counter_url(leaving, counter_name))
        kept = await connect(counter_url(staying, counter_name))
        await receive(gone)
        await receive(kept)
        assert leaving.child is not None
        mark = leaving.child.mark()
        leaving.child.send_signal(signal.SIGTERM)
        leaving.wait_for_event("draining", after=mark)
        with pytest.raises(ConnectionClosed):
            await receive_until(gone, lambda m: False, timeout=10)
        assert gone.close_code == 1012
        assert await asyncio.to_thread(leaving.child.wait, seconds(10)) == 0
        await kept.send("3")
        message = await receive_until(kept, lambda m: m["type"] == "total" and m["seq"] == 1)
        assert message["total"] == 3
        await kept.close()

    asyncio.run(scenario())


def test_redis_outage_keeps_clients_and_recovers_exactly(scratch: Path, counter_name: str) -> None:
    """Redis down: 503 handshakes and readyz, unavailable errors, clients kept; then exact."""
    redis = RedisServer(scratch).start()
    worker = WorkerProcess(redis.url, {"REDIS_TIMEOUT": "1"}).start()
    try:
        asyncio.run(_redis_outage(redis, worker, counter_name))
    finally:
        worker.stop()
        redis.stop()


async def _redis_outage(redis: RedisServer, worker: WorkerProcess, counter_name: str) -> None:
    connection = await connect(counter_url(worker, counter_name))
    await receive(connection)
    await connection.send('{"op": "incr", "by": 10, "id": "before"}')
    await receive_until(connection, lambda m: m["type"] == "ack")
    assert worker.child is not None
    mark = worker.child.mark()
    redis.stop()
    await asyncio.to_thread(worker.wait_for_event, "redis_lost", 10, mark)
    assert http_get(worker.http + "/readyz")[0] == 503
    assert http_get(worker.http + "/healthz")[0] == 200
    with pytest.raises(InvalidStatus) as caught:
        await connect(counter_url(worker, counter_name))
    assert caught.value.response.status_code == 503
    await connection.send('{"op": "incr", "by": 5, "id": "during"}')
    error = await receive_until(connection, lambda m: m["type"] == "error")
    assert (error["code"], error["id"]) == ("unavailable", "during")
    mark = worker.child.mark()
    redis.start()
    await asyncio.to_thread(worker.wait_for_event, "ready", 20, mark)
    assert http_get(worker.http + "/readyz")[0] == 200
    await connection.send('{"op": "incr", "by": 1, "id": "after"}')
    ack = await receive_until(connection, lambda m: m["type"] == "ack")
    assert (ack["total"], ack["seq"]) == (11, 2)
    await connection.close()


def test_clients_with_and_without_compression_share_a_counter_exactly(
    start_worker: StartWorker, counter_name: str
) -> None:
    """With WS_COMPRESSION on, a deflate client gets frames of its own beside the shared one."""
    # 50 increments from one writer: faster than a person types.
    worker = start_worker(WS_COMPRESSION="true", WS_RATE_LIMIT="0")

    async def scenario() -> None:
        url = counter_url(worker, counter_name)
        deflate = Follower(await connect(url, compression="deflate"))
        plain = Follower(await connect(url, compression=None))
        assert deflate.connection.response is not None
        assert (
            "permessage-deflate" in deflate.connection.response.headers["Sec-WebSocket-Extensions"]
        )
        tasks = [asyncio.create_task(follower.follow()) for follower in (deflate, plain)]
        for _ in range(50):
            await deflate.connection.send("1")
        for follower, acks in ((deflate, 50), (plain, 0)):
            await follower.wait_for_seq(50, acks=acks)
            assert follower.totals[-1] == 50
            assert follower.seqs == sorted(set(follower.seqs))
            await follower.connection.close()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())


def test_the_worker_collects_its_youngest_generation_less_often(
    start_worker: StartWorker,
) -> None:
    """The worker raises the collector's youngest threshold (runtime.tune_collector) and
    keeps the older generations' defaults; its ``listening`` line says so, and /metrics
    counts the collector's runs per generation."""
    worker = start_worker()
    listening = worker.wait_for_event("listening")
    _, middle, oldest = gc.get_threshold()
    assert listening["gc_threshold"] == [YOUNG_GENERATION_THRESHOLD, middle, oldest]
    status, metrics = http_get(worker.http + "/metrics")
    assert status == 200
    assert 'python_gc_collections_total{generation="2"}' in metrics
