"""ws-counter's Python client library: exactly-once increments and live totals.

::

    from ws_counter_client import connect

    async with connect("ws://localhost:8000", counter="votes") as votes:
        ack = await votes.increment(5)
        async for total in votes.totals():
            print(total.total, total.seq)

``client`` holds the asyncio client; ``rules`` the numbering, resend and
ordering rules every ws-counter client follows (docs/clients.md).
"""

from __future__ import annotations

from .client import (
    Ack,
    ClientClosed,
    ConnectionRefused,
    CounterClient,
    CounterClientError,
    IncrementRefused,
    IncrementUnknown,
    Total,
    connect,
    counter_url,
)

__all__ = [
    "Ack",
    "ClientClosed",
    "ConnectionRefused",
    "CounterClient",
    "CounterClientError",
    "IncrementRefused",
    "IncrementUnknown",
    "Total",
    "connect",
    "counter_url",
]
