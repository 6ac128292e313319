"""WebSocket client helpers for tests that talk to real workers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from .conftest import WorkerProcess, seconds


def counter_url(worker: WorkerProcess, counter: str, query: str = "") -> str:
    return f"{worker.url}counters/{counter}{query}"


async def receive(connection: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(
        await asyncio.wait_for(connection.recv(), seconds(timeout))
    )
    return message


async def receive_until(
    connection: ClientConnection, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0
) -> dict[str, Any]:
    async with asyncio.timeout(seconds(timeout)):
        while True:
            message = await receive(connection, timeout)
            if predicate(message):
                return message


class Follower:
    """A client that records every total it sees."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.seqs: list[int] = []
        self.totals: list[int] = []
        self.acks: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    async def follow(self) -> None:
        try:
            async for raw in self.connection:
                message = json.loads(raw)
                if message["type"] == "total":
                    self.seqs.append(message["seq"])
                    self.totals.append(message["total"])
                elif message["type"] == "ack":
                    self.acks.append(message)
                self.changed.set()
        except ConnectionClosed:
            pass

    async def wait_for_seq(self, seq: int, acks: int = 0, timeout: float = 20.0) -> None:
        """Wait until this client has seen ``seq`` and (acks arrive in any order) ``acks`` acks."""
        async with asyncio.timeout(seconds(timeout)):
            while not self.seqs or self.seqs[-1] < seq or len(self.acks) < acks:
                self.changed.clear()
                await self.changed.wait()
