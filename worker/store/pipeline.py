"""Every call for one Redis node made in one turn of the event loop, in one write.

A worker serving thousands of counters has a call ready for many of them in
the same turn of its loop (each counter's batch of increments, announcements,
reads). Sent as one round trip each, they queued for the pool's connections
until its timeout fired, and a healthy Redis was reported unavailable. Here the
calls made for a node during one turn go out together: one write on one
connection, the replies read in order and handed back, each call its own.

* Calls that arrive while every connection carries a write wait in the queue
  and all go in the next write once one returns. Waiting is back-pressure
  (their increments stay in flight; the connection's flow control stops
  reading from clients that have too many), never an error.
* A call's error reply is that call's alone. A connection that fails while
  a write is out fails every call it carried, with the outcome unknown.
* With REDIS_REPLICA_ACKS, one WAIT closes a write that carries calls that
  want it: WAIT counts the replicas holding everything the connection wrote,
  so it confirms every call before it.
* Order: calls go out in the order they were made. Each counter has one call
  in flight at a time (``worker.batcher``), so its increments stay in order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio.connection import AbstractConnection, ConnectionPool

from ..errors import OutcomeUnknown, StoreError
from ..tasks import report_failure
from .errors import map_redis_errors
from .typed import pooled_connection

Command = tuple[Any, ...]

# The most calls one write carries; more stay queued for the next.
MAX_CALLS = 1024


@dataclass(slots=True)
class Call:
    commands: Sequence[Command]
    confirm: bool
    replies: asyncio.Future[list[Any]]


class Pipeline:
    """The calls to one Redis node (or the Sentinels' master): gathered, written, answered."""

    def __init__(self, pool: ConnectionPool, connections: int, wait: Command | None) -> None:
        self._pool = pool
        self._wait = wait
        # One write per connection at a time; never more writes than connections,
        # so taking a connection from the pool never waits for another write.
        self._writes = asyncio.Semaphore(connections)
        self._queue: deque[Call] = deque()
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, commands: Sequence[Command], *, confirm: bool = False) -> list[Any]:
        """``commands``' replies in order (an error reply as its exception, not raised);
        with ``confirm``, WAIT's reply after them. Raises StoreError if the write failed."""
        loop = asyncio.get_running_loop()
        call = Call(commands, confirm and self._wait is not None, loop.create_future())
        self._queue.append(call)
        if not self._scheduled:
            # At the end of this turn, once every caller ready in it has queued.
            self._scheduled = True
            loop.call_soon(self._start_write)
        return await call.replies

    def _start_write(self) -> None:
        self._scheduled = False
        task = asyncio.create_task(self._write())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self) -> None:
        async with self._writes:
            calls = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_CALLS))]
            if self._queue and not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._start_write)
            if not calls:
                return  # an earlier write took them while this one waited
            try:
                self._answer(calls, await self._exchange(calls))
            except StoreError as exc:
                _fail(calls, exc)
            except Exception as exc:
                report_failure("pipeline", exc)
            finally:
                # Cancelled (the worker stopping) midway: nobody waits for ever.
                _fail(calls, OutcomeUnknown("the worker stopped before Redis answered"))

    async def _exchange(self, calls: list[Call]) -> list[Any]:
        commands = [command for call in calls for command in call.commands]
        if any(call.confirm for call in calls):
            assert self._wait is not None
            commands.append(self._wait)
        with map_redis_errors(sent=False):
            connection = await pooled_connection(self._pool)
        try:
            with map_redis_errors(sent=True):
                await connection.send_packed_command(pack(commands))
                return [await _reply(connection) for _ in commands]
        finally:
            await self._pool.release(connection)

    @staticmethod
    def _answer(calls: list[Call], replies: list[Any]) -> None:
        start = 0
        for call in calls:
            end = start + len(call.commands)
            mine = replies[start:end]
            if call.confirm:
                mine.append(replies[-1])
            start = end
            if not call.replies.done():
                call.replies.set_result(mine)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _fail(calls: list[Call], exc: StoreError) -> None:
    for call in calls:
        if not call.replies.done():
            call.replies.set_exception(exc)


def pack(commands: Sequence[Command]) -> bytes:
    """Commands in RESP, as one buffer: one write, and less work per argument than
    redis-py's general packer (its pack_command and encoder, measured against this
    function in a py-spy profile of the throughput run)."""
    out: list[bytes] = []
    for command in commands:
        out.append(b"*%d\r\n" % len(command))
        for arg in command:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


async def _reply(connection: AbstractConnection) -> Any:
    """One reply; an error reply is returned, so the replies after it are still read."""
    try:
        return await connection.read_response()
    except redis_errors.ResponseError as exc:
        return exc
