"""``python -m bench.writepath``: what one frame costs its sender, through the transport
and through the system call under it.

The fan-out writes one prebuilt frame to every client. While a transport holds
nothing, its ``write`` ends in one ``write(2)`` on the socket; the question is
what the layers around that call cost. This opens ``--connections`` loopback
TCP connections, accepted by the event loop, and writes a total's frame to each
of them ``--rounds`` times, alternating in one run between ``transport.write``
and ``os.write`` on the socket's descriptor, under uvloop and under the stdlib
loop. Each figure is the sender's CPU time (the kernel's share included) per
frame; the receivers are emptied between rounds, outside the timing, so no
buffer fills.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import time
from collections.abc import Callable
from typing import cast

import uvloop

from ws_counter.worker.core.protocol import total_message
from ws_counter.worker.core.state import CounterState
from ws_counter.worker.server.wire import text_frame

FRAME = text_frame(total_message("default", CounterState("e1", 678, 12345)))
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": uvloop.new_event_loop,
    "asyncio": asyncio.new_event_loop,
}


class Accepted(asyncio.Protocol):
    def __init__(self, made: list[asyncio.Transport], count: int, all_made: asyncio.Event) -> None:
        self.made, self.count, self.all_made = made, count, all_made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; both have write.
        self.made.append(cast(asyncio.Transport, transport))
        if len(self.made) == self.count:
            self.all_made.set()


async def connected(count: int) -> tuple[list[asyncio.Transport], list[socket.socket]]:
    """``count`` accepted transports and the client sockets at their other ends."""
    loop = asyncio.get_running_loop()
    made: list[asyncio.Transport] = []
    everyone = asyncio.Event()
    server = await loop.create_server(
        lambda: Accepted(made, count, everyone), "127.0.0.1", 0, backlog=count
    )
    port = server.sockets[0].getsockname()[1]
    clients = []
    for _ in range(count):
        client = socket.socket()
        client.setblocking(False)
        await loop.sock_connect(client, ("127.0.0.1", port))
        clients.append(client)
    async with asyncio.timeout(30):
        await everyone.wait()
    server.close()
    return made, clients


def empty(clients: list[socket.socket]) -> None:
    for client in clients:
        try:
            while client.recv(1 << 16):
                pass
        except BlockingIOError:
            pass


def cpu_per_frame_us(write: Callable[[], None], count: int, clients: list[socket.socket]) -> float:
    """One round: ``write`` writes the frame to every connection; CPU µs per frame."""
    started = time.process_time()
    write()
    spent = time.process_time() - started
    empty(clients)
    return spent / count * 1e6


async def measure(count: int, rounds: int) -> dict[str, float]:
    transports, clients = await connected(count)
    descriptors = [transport.get_extra_info("socket").fileno() for transport in transports]

    def through_transport() -> None:
        for transport in transports:
            transport.write(FRAME)

    def system_call() -> None:
        for descriptor in descriptors:
            os.write(descriptor, FRAME)

    samples: dict[str, list[float]] = {"transport.write": [], "os.write": []}
    for _ in range(rounds):
        samples["transport.write"].append(cpu_per_frame_us(through_transport, count, clients))
        samples["os.write"].append(cpu_per_frame_us(system_call, count, clients))
    for transport in transports:
        transport.close()
    for client in clients:
        client.close()
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.writepath", description=__doc__)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)
    print(f"{len(FRAME)}-byte frame, {args.connections:,} connections, {args.rounds} rounds")
    print("| loop | transport.write us/frame | os.write us/frame | ratio |")
    print("|---|---:|---:|---:|")
    for name, new_loop in LOOPS.items():
        with asyncio.Runner(loop_factory=new_loop) as runner:
            cost = runner.run(measure(args.connections, args.rounds))
        through, direct = cost["transport.write"], cost["os.write"]
        print(f"| {name} | {through:.2f} | {direct:.2f} | {through / direct:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
