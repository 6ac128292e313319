"""Increment senders for the benchmark, run in their own process.

Two modes: as fast as acks allow (``window`` increments in flight per
connection), or paced at an aggregate rate, recording when each acknowledged
seq was sent so that fan-out latency can be measured from the send.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import secrets
import time
import urllib.request
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ws_counter.worker import runtime
from ws_counter.worker.core.protocol import incr_message
from ws_counter_client.rules import new_session_id
from ws_counter_client.urls import counter_url


class Tally:
    def __init__(self) -> None:
        self.acked = 0
        self.total_by = 0
        self.errors = 0
        self.error_codes: collections.Counter[str] = collections.Counter()
        self.sent_at: dict[int, float] = {}
        self.ids = itertools.count()
        # Ids are deduplicated per counter: unique across writer processes and runs.
        self.prefix = secrets.token_hex(4) + "-"
        self.outstanding = 0
        self.duplicates = 0
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
        sent = pending.pop(reply_key(message), None)
        if sent is None:
            return False
        tally.answered()
        tally.acked += 1
        tally.total_by += 0 if message.get("duplicate") else 1
        tally.duplicates += bool(message.get("duplicate"))
        tally.sent_at[message["seq"]] = sent
        return True
    if kind == "error":
        if pending.pop(reply_key(message), None) is not None:
            tally.answered()
        tally.errors += 1
        tally.error_codes[str(message.get("code"))] += 1
        return True
    return False


class Numbering:
    """One writer connection's increments: ids from the tally, or its own session's numbers."""

    def __init__(self, tally: Tally, dedup: str) -> None:
        self.tally = tally
        self.session = new_session_id() if dedup == "session" else None
        self.n = 0

    def next(self) -> tuple[str, str]:
        """The next increment of 1: its reply key and its frame."""
        if self.session is None:
            increment_id = f"{self.tally.prefix}{next(self.tally.ids)}"
            return increment_id, incr_message(1, increment_id)
        self.n += 1
        return str(self.n), incr_message(1, session=self.session, n=self.n)


async def _flat_out(
    connection: ClientConnection, tally: Tally, deadline: float, window: int, dedup: str
) -> None:
    numbering = Numbering(tally, dedup)
    pending: dict[str, float] = {}
    room = asyncio.Semaphore(window)
    reader = asyncio.create_task(_reader(connection, tally, pending, room))
    # Until the deadline, or until the server drops the connection: waiting for
    # room in the window must not outlast either.
    with contextlib.suppress(TimeoutError, ConnectionClosed):
        async with asyncio.timeout(deadline - time.monotonic()):
            while True:
                await room.acquire()
                key, frame = numbering.next()
                pending[key] = time.monotonic()
                tally.sent()
                await connection.send(frame)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            await tally.idle.wait()
    reader.cancel()


async def _paced(
    connections: list[ClientConnection], tally: Tally, seconds: float, rate: float, dedup: str
) -> None:
    numberings = [Numbering(tally, dedup) for _ in connections]
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
        key, frame = numberings[index].next()
        pendings[index][key] = time.monotonic()
        tally.sent()
        with contextlib.suppress(ConnectionClosed):  # a dropped writer stays unacknowledged
            await connections[index].send(frame)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(60):
            await tally.idle.wait()
    for reader in readers:
        reader.cancel()


async def _run(plan: WriterPlan) -> dict[str, Any]:
    connections, seconds, window, rate = plan.connections, plan.seconds, plan.window, plan.rate
    tally = Tally()
    # No keepalive pings: an overloaded server answering late must not end the run.
    opened = [
        await connect(_url_of(plan, index), compression=None, max_size=None, ping_interval=None)
        for index in range(connections)
    ]
    for connection in opened:
        await connection.recv()  # the total on open
    if rate is None:
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(_flat_out(c, tally, deadline, window, plan.dedup) for c in opened))
    else:
        await _paced(opened, tally, seconds, rate, plan.dedup)
    # Closing must not hang on a server that stopped answering.
    with contextlib.suppress(TimeoutError, ConnectionClosed):
        async with asyncio.timeout(5):
            await asyncio.gather(*(connection.close() for connection in opened))
    return {
        "acked": tally.acked,
        "total_by": tally.total_by,
        # Sent and never answered (the run's last, or a dropped connection's): applied
        # once or not at all, so the total may hold them or not.
        "unanswered": tally.outstanding,
        "duplicates": tally.duplicates,
        "errors": tally.errors,
        "error_codes": dict(tally.error_codes),
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
    # "id" for every server; "session" for ws-counter, which numbers them per session.
    dedup: str = "id"
    # Connection i writes to counter "<prefix><first + i % counters>"; 0: ``url`` as given.
    counters: int = 0
    first: int = 0
    prefix: str = "many-"


def _url_of(plan: WriterPlan, index: int) -> str:
    if not plan.counters:
        return plan.url
    return counter_url(plan.url, f"{plan.prefix}{plan.first + index % plan.counters}")


def run_writers(plan: WriterPlan, pipe: Connection) -> None:
    pipe.send(runtime.run(_run(plan)))


async def read_total(url: str) -> int:
    """The counter's total: from Redis through ws-counter's HTTP API where the server has
    one, else the first total a WebSocket gets (the baselines: one process each).

    A WebSocket's first total is the state its worker last heard, which may lag Redis
    by a publish: right after a run, on another worker, a count short of the last acks.
    """
    http = url.replace("ws://", "http://", 1)
    try:
        return await asyncio.to_thread(_read_total_over_http, http)
    except (OSError, ValueError, KeyError):
        pass
    async with connect(url, compression=None) as connection:
        return int(json.loads(await connection.recv())["total"])


def _read_total_over_http(url: str) -> int:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        if not response.headers.get("Content-Type", "").startswith("application/json"):
            raise ValueError("no HTTP API here")
        return int(json.loads(response.read())["total"])


def reply_key(message: dict[str, Any]) -> str:
    """Which increment an ack or error answers: its n (session) or its id, as a string."""
    if "n" in message:
        return str(message["n"])
    return str(message.get("id"))
