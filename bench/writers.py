"""Increment senders for the benchmark, run in their own process.

Two modes: as fast as acks allow (``window`` increments in flight per
connection), or paced at an aggregate rate, recording when each acknowledged
seq was sent so that fan-out latency can be measured from the send.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


class Tally:
    def __init__(self) -> None:
        self.acked = 0
        self.total_by = 0
        self.errors = 0
        self.sent_at: dict[int, float] = {}
        self.ids = itertools.count()
        # Ids are deduplicated per counter: unique across writer processes and runs.
        self.prefix = secrets.token_hex(4) + "-"
        self.outstanding = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def sent(self) -> None:
        self.outstanding += 1
        self.idle.clear()

    def answered(self) -> None:
        self.outstanding -= 1
        if not self.outstanding:
            self.idle.set()


async def _reader(
    connection: ClientConnection,
    tally: Tally,
    pending: dict[str, float],
    room: asyncio.Semaphore | None,
) -> None:
    # An overloaded server may drop a writer's connection (a run of the naive
    # baselines at high rates does): what was not acknowledged stays unacknowledged.
    with contextlib.suppress(ConnectionClosed):
        async for raw in connection:
            if _count_reply(json.loads(raw), tally, pending) and room is not None:
                room.release()


def _count_reply(message: dict[str, Any], tally: Tally, pending: dict[str, float]) -> bool:
    """Count an ack or error; True when it answered an increment (a slot is free again)."""
    kind = message.get("type")
    if kind == "ack":
        sent = pending.pop(message["id"], None)
        if sent is None:
            return False
        tally.answered()
        tally.acked += 1
        tally.total_by += 0 if message.get("duplicate") else 1
        tally.sent_at[message["seq"]] = sent
        return True
    if kind == "error":
        if pending.pop(message.get("id"), None) is not None:
            tally.answered()
        tally.errors += 1
        return True
    return False


async def _flat_out(
    connection: ClientConnection, tally: Tally, deadline: float, window: int
) -> None:
    pending: dict[str, float] = {}
    room = asyncio.Semaphore(window)
    reader = asyncio.create_task(_reader(connection, tally, pending, room))
    # Until the deadline, or until the server drops the connection: waiting for
    # room in the window must not outlast either.
    with contextlib.suppress(TimeoutError, ConnectionClosed):
        async with asyncio.timeout(deadline - time.monotonic()):
            while True:
                await room.acquire()
                increment_id = f"{tally.prefix}{next(tally.ids)}"
                pending[increment_id] = time.monotonic()
                tally.sent()
                await connection.send(f'{{"op":"incr","by":1,"id":"{increment_id}"}}')
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            await tally.idle.wait()
    reader.cancel()


async def _paced(
    connections: list[ClientConnection], tally: Tally, seconds: float, rate: float
) -> None:
    pendings: list[dict[str, float]] = [{} for _ in connections]
    readers = [
        asyncio.create_task(_reader(c, tally, p, None))
        for c, p in zip(connections, pendings, strict=True)
    ]
    started = time.monotonic()
    count = int(seconds * rate)
    for n in range(count):
        # Send on schedule: the n-th increment is due at n / rate seconds.
        delay = started + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        index = n % len(connections)
        increment_id = f"{tally.prefix}p{n}"
        pendings[index][increment_id] = time.monotonic()
        tally.sent()
        with contextlib.suppress(ConnectionClosed):  # a dropped writer stays unacknowledged
            await connections[index].send(f'{{"op":"incr","by":1,"id":"{increment_id}"}}')
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(60):
            await tally.idle.wait()
    for reader in readers:
        reader.cancel()


async def _run(
    url: str, connections: int, seconds: float, window: int, rate: float | None
) -> dict[str, Any]:
    tally = Tally()
    # No keepalive pings: an overloaded server answering late must not end the run.
    opened = [
        await connect(url, compression=None, max_size=None, ping_interval=None)
        for _ in range(connections)
    ]
    for connection in opened:
        await connection.recv()  # the total on open
    if rate is None:
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(_flat_out(c, tally, deadline, window) for c in opened))
    else:
        await _paced(opened, tally, seconds, rate)
    # Closing must not hang on a server that stopped answering.
    with contextlib.suppress(TimeoutError, ConnectionClosed):
        async with asyncio.timeout(5):
            await asyncio.gather(*(connection.close() for connection in opened))
    return {
        "acked": tally.acked,
        "total_by": tally.total_by,
        "errors": tally.errors,
        "sent_at": tally.sent_at,
    }


@dataclass(frozen=True)
class WriterPlan:
    """``connections`` writers for ``seconds``: flat out with ``window`` in flight each,
    or at ``rate`` increments per second in all."""

    url: str
    connections: int
    seconds: float
    window: int = 16
    rate: float | None = None


def run_writers(plan: WriterPlan, pipe: Connection) -> None:
    pipe.send(uvloop.run(_run(plan.url, plan.connections, plan.seconds, plan.window, plan.rate)))


async def read_total(url: str) -> int:
    async with connect(url, compression=None) as connection:
        return int(json.loads(await connection.recv())["total"])
