"""ws-counter's Python client library: exactly-once increments and live totals.

::

    from ws_counter_client import connect

    async with connect("ws://localhost:8000", counter="votes") as votes:
        ack = await votes.increment(5)
        async for total in votes.totals():
            print(total.total, total.seq)

``core`` is the client as a state machine without I/O (events in, actions
out); ``rules`` numbers increments and decides refusals; ``client`` is the
asyncio adapter over both. docs/clients.md has the rules every ws-counter
client follows.
"""

from __future__ import annotations

from .client import CounterClient, connect
from .results import (
    Ack,
    CertificateRejected,
    ClientClosed,
    ConnectionRefused,
    CounterClientError,
    IncrementRefused,
    IncrementUnknown,
    Total,
)
from .urls import counter_url, tls_context

__all__ = [
    "Ack",
    "CertificateRejected",
    "ClientClosed",
    "ConnectionRefused",
    "CounterClient",
    "CounterClientError",
    "IncrementRefused",
    "IncrementUnknown",
    "Total",
    "connect",
    "counter_url",
    "tls_context",
]
