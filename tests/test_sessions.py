"""Exactly-once with sessions (Kafka's idempotent producer), against real workers and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ws_counter.worker.core.protocol import incr_message
from ws_counter.worker.store.keys import session_key
from ws_counter_client.rules import new_session_id

from .clients import counter_url, receive, receive_until
from .conftest import RedisServer, StartWorker, WorkerProcess

# A small window, so its edges are reached in a few increments; the in-flight
# limit may not exceed it.
WINDOW = {"WS_SESSION_WINDOW": "4", "WS_MAX_PENDING_INCREMENTS": "4", "WS_RATE_LIMIT": "0"}


def is_reply(message: dict[str, Any]) -> bool:
    return message["type"] in ("ack", "error")


async def send(connection: ClientConnection, by: int, session: str, n: int) -> dict[str, Any]:
    """One increment, and the ack or error that answers it."""
    await connection.send(incr_message(by, session=session, n=n))
    return await receive_until(connection, is_reply)


async def read_state(worker: WorkerProcess, counter: str) -> dict[str, Any]:
    async with connect(counter_url(worker, counter)) as connection:
        return await receive(connection)


async def read_total(worker: WorkerProcess, counter: str) -> int:
    total: int = (await read_state(worker, counter))["total"]
    return total


def test_numbers_in_order_are_applied_and_a_gap_is_refused(
    start_worker: StartWorker, counter_name: str
) -> None:
    """n equal to the expected one is applied; a larger n is out_of_order with the expected n."""
    worker = start_worker(**WINDOW)
    session = new_session_id()

    async def scenario() -> None:
        async with connect(counter_url(worker, counter_name)) as connection:
            await receive(connection)
            first = await send(connection, 5, session, 1)
            assert first == {
                "type": "ack",
                "session": session,
                "n": 1,
                "total": 5,
                "seq": 1,
                "epoch": first["epoch"],
            }
            gap = await send(connection, 7, session, 3)
            assert (gap["type"], gap["code"], gap["expected"]) == ("error", "out_of_order", 2)
            assert (gap["session"], gap["n"]) == (session, 3)
            second = await send(connection, 2, session, 2)
            assert (second["type"], second["n"], second["total"]) == ("ack", 2, 7)
        assert await read_total(worker, counter_name) == 7

    asyncio.run(scenario())


def test_the_window_edges(start_worker: StartWorker, counter_name: str) -> None:
    """Within the last W a resend gets its original ack; beyond them, a duplicate without total."""
    worker = start_worker(**WINDOW)
    session = new_session_id()

    async def scenario() -> None:
        async with connect(counter_url(worker, counter_name)) as connection:
            await receive(connection)
            acks = [await send(connection, n * 10, session, n) for n in range(1, 8)]
            # Seven applied, W = 4: numbers 4..7 keep their outcomes, 1..3 do not.
            oldest_kept = await send(connection, 40, session, 4)
            assert oldest_kept == {**acks[3], "duplicate": True}
            newest = await send(connection, 70, session, 7)
            assert newest == {**acks[6], "duplicate": True}
            beyond = await send(connection, 30, session, 3)
            assert beyond["type"] == "ack" and beyond["duplicate"] is True
            assert (beyond["session"], beyond["n"]) == (session, 3)
            assert "total" not in beyond and "seq" not in beyond
            assert "no longer kept" in beyond["message"]
        assert await read_total(worker, counter_name) == sum(n * 10 for n in range(1, 8))

    asyncio.run(scenario())


def test_a_session_keeps_one_small_key_that_expires_when_idle(
    start_worker: StartWorker, redis_server: RedisServer, counter_name: str
) -> None:
    """A session's state is one hash of at most W+1 fields, its TTL refreshed on every use;
    once it expires, a resend is refused as out_of_order, never applied a second time."""
    worker = start_worker(WS_SESSION_TTL="600", **WINDOW)
    session = new_session_id()
    key = session_key(counter_name, session)

    async def scenario() -> None:
        async with connect(counter_url(worker, counter_name)) as connection:
            await receive(connection)
            for n in range(1, 11):
                assert (await send(connection, 1, session, n))["type"] == "ack"
            assert int(redis_server.cli("HLEN", key)) == 4 + 1  # the last W outcomes and next
            redis_server.cli("EXPIRE", key, "5")
            await send(connection, 1, session, 10)  # a resend is a use: the TTL starts again
            assert 590 <= int(redis_server.cli("TTL", key)) <= 600
            # What the TTL does after 600 idle seconds, done at once:
            assert redis_server.cli("DEL", key) == "1"
            expired = await send(connection, 1, session, 10)
            assert (expired["code"], expired["expected"]) == ("out_of_order", 1)
        assert await read_total(worker, counter_name) == 10

    asyncio.run(scenario())


def test_one_session_on_two_counters_numbers_each_on_its_own(
    start_worker: StartWorker, counter_name: str
) -> None:
    """A session's numbers are per counter: n=1 applies once on each of two counters."""
    worker = start_worker(**WINDOW)
    session = new_session_id()
    other = counter_name[:60] + "-two"

    async def scenario() -> None:
        async with (
            connect(counter_url(worker, counter_name)) as first,
            connect(counter_url(worker, other)) as second,
        ):
            await receive(first)
            await receive(second)
            assert (await send(first, 3, session, 1))["total"] == 3
            assert (await send(second, 4, session, 1))["total"] == 4
            assert (await send(first, 3, session, 1))["duplicate"] is True
            assert (await send(second, 5, session, 2))["total"] == 9
        assert await read_total(worker, counter_name) == 3
        assert await read_total(worker, other) == 9

    asyncio.run(scenario())


def test_resend_after_a_worker_dies_mid_flight_neither_loses_nor_doubles(
    start_worker: StartWorker, counter_name: str
) -> None:
    """Increments in flight when their worker is killed, resent in order on another worker,
    are each applied exactly once."""
    doomed, survivor = start_worker(**WINDOW), start_worker(**WINDOW)
    session = new_session_id()
    numbers = {n: n % 7 + 1 for n in range(1, 3001)}

    async def scenario() -> None:
        acked: dict[int, dict[str, Any]] = {}
        async with connect(counter_url(doomed, counter_name)) as connection:
            await receive(connection)
            for n, by in numbers.items():
                await connection.send(incr_message(by, session=session, n=n))
            # Some acks arrive, then the worker dies with the rest in flight.
            acked.update({m["n"]: m for m in [await receive_until(connection, is_reply)]})
            doomed.stop(signal.SIGKILL)
            # The connection dies with the worker (websockets iteration ends
            # quietly on a normal close, raises on an abnormal one).
            with contextlib.suppress(ConnectionClosed):
                async for raw in connection:
                    message = json.loads(raw)
                    if message["type"] == "ack":
                        acked[message["n"]] = message
        assert len(acked) < len(numbers), "the kill came after every ack: nothing was in flight"
        async with connect(counter_url(survivor, counter_name)) as connection:
            await receive(connection)
            for n in sorted(set(numbers) - set(acked)):
                reply = await send(connection, numbers[n], session, n)
                assert reply["type"] == "ack", reply
                acked[n] = reply
        assert sorted(acked) == sorted(numbers)
        # Every application moves seq by one: 3,000 applications and the right total
        # mean each number was applied exactly once.
        final = await read_state(survivor, counter_name)
        assert (final["seq"], final["total"]) == (len(numbers), sum(numbers.values()))
        # Acks lost with the worker may be more than the window (4) holds: the
        # resends of those are answered "applied earlier", without a seq.
        seqs = [a["seq"] for a in acked.values() if "seq" in a]
        assert len(seqs) == len(set(seqs)), "two numbers acknowledged with one seq"

    asyncio.run(scenario())


# The session rules as a model: what a worker must answer to n, given what it applied.
def model_reply(n: int, expected: int, window: int) -> str:
    if n == expected:
        return "applied"
    if n > expected:
        return "out_of_order"
    return "duplicate" if n >= expected - window else "applied_earlier"


def observed_reply(message: dict[str, Any]) -> str:
    if message["type"] == "error":
        return str(message["code"])
    if not message.get("duplicate"):
        return "applied"
    return "duplicate" if "total" in message else "applied_earlier"


_SESSIONS = iter(range(10**9))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    steps=st.lists(
        st.one_of(
            st.just(("next", 0)),
            st.tuples(st.just("back"), st.integers(1, 8)),
            st.tuples(st.just("ahead"), st.integers(1, 3)),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_session_rules_hold_for_any_sequence(
    start_worker_once: WorkerProcess, counter_name: str, steps: list[tuple[str, int]]
) -> None:
    """For any mix of next numbers, resends and gaps, a real worker answers as the model does,
    and the total is the sum of exactly the increments the model applied."""
    counter = f"{counter_name[:50]}-{next(_SESSIONS)}"
    session = new_session_id()

    async def scenario() -> None:
        expected, total = 1, 0
        async with connect(counter_url(start_worker_once, counter)) as connection:
            await receive(connection)
            for kind, offset in steps:
                if kind == "next":
                    n = expected
                elif kind == "back":
                    n = max(1, expected - offset)
                else:
                    n = expected + offset
                by = n * 3 + 1
                reply = await send(connection, by, session, n)
                want = model_reply(n, expected, 4)
                assert observed_reply(reply) == want, (n, expected, reply)
                if want == "applied":
                    expected, total = expected + 1, total + by
                if want == "duplicate":
                    assert reply["n"] == n
        assert await read_total(start_worker_once, counter) == total

    asyncio.run(scenario())
