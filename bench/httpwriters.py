"""Increments by the HTTP API, as fast as responses come back, run in their own process.

Each connection is kept alive and sends one ``POST /counters/<name>/increments``
at a time (the worker answers a connection's requests one by one), numbered in
a session of its own so that the totals can be checked. Requests are written
by hand and responses read by their Content-Length: the generator should cost
less than the server it measures.
"""

from __future__ import annotations

import asyncio
import time
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

from ws_counter.worker import runtime
from ws_counter_client.rules import new_session_id

from .writers import WriterPlan

COUNTER = "default"


def run_http_writers(plan: WriterPlan, pipe: Connection) -> None:
    pipe.send(runtime.run(_run(plan)))


async def _run(plan: WriterPlan) -> dict[str, Any]:
    parts = urlsplit(plan.url)
    deadline = time.monotonic() + plan.seconds
    results = await asyncio.gather(
        *(
            _writer(parts.hostname or "127.0.0.1", parts.port or 80, deadline)
            for _ in range(plan.connections)
        )
    )
    acked = sum(acked for acked, _ in results)
    # Every increment adds 1: the acknowledged ones are the total added.
    # One request at a time on each connection, each answered before the next (a
    # broken connection raises): none is left unanswered.
    return {
        "acked": acked,
        "total_by": acked,
        "errors": sum(errors for _, errors in results),
        "unanswered": 0,
    }


async def _writer(host: str, port: int, deadline: float) -> tuple[int, int]:
    reader, writer = await asyncio.open_connection(host, port)
    session = new_session_id()
    acked = errors = 0
    n = 0
    try:
        while time.monotonic() < deadline:
            n += 1
            body = b'{"by":1,"session":"%s","n":%d}' % (session.encode(), n)
            writer.write(
                b"POST /counters/%s/increments HTTP/1.1\r\nHost: bench\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (COUNTER.encode(), len(body), body)
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            if head.startswith(b"HTTP/1.1 200 "):
                acked += 1
            else:
                errors += 1
                # Nothing was applied; the next request takes the same number.
                n -= 1
    finally:
        writer.close()
    return acked, errors
