"""``python -m bench.writepath``: what one frame costs its sender, through the transport
and through the system call under it.

The fan-out writes one prebuilt frame to every client. While a transport holds
nothing, its ``write`` ends in one ``write(2)`` on the socket; the question is
what the layers around that call cost. This opens ``--connections`` loopback
TCP connections, accepted by the event loop, and writes a total's frame to each
of them ``--rounds`` times, alternating in one run between ``transport.write``
and ``os.write`` on the socket's descriptor, under uvloop and under the stdlib
loop. Each figure is the sender's CPU time (the kernel's share included) per
frame.

``--receiver here`` keeps the receiving sockets in the sender's process and
empties them between rounds, outside the timing: no write wakes anybody.
``--receiver process`` hands them to a reader process that sleeps in epoll
until data comes, as a fan-out's clients do between totals; on loopback the
sender's write then also pays the receiver's TCP processing and its wake-up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import selectors
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


class Receivers:
    """Where the frames land, and how the sender knows a round has been read."""

    def __init__(self, clients: list[socket.socket], in_process: bool, frame_bytes: int) -> None:
        self.clients, self.in_process = clients, in_process
        self.round_bytes = frame_bytes * len(clients)
        if in_process:
            self.reader, self.done = _start_reader(clients, self.round_bytes)
            for client in clients:
                client.close()

    def read_round(self) -> None:
        """Return once the receivers have read the round just written."""
        if not self.in_process:
            _empty(self.clients)
        elif os.read(self.done[0], 1) != b".":
            raise RuntimeError("the reader process ended early")

    def close(self) -> None:
        if self.in_process:
            os.close(self.done[1])
            os.close(self.done[0])
            os.waitpid(self.reader, 0)
        else:
            for client in self.clients:
                client.close()


def _empty(clients: list[socket.socket]) -> None:
    for client in clients:
        try:
            while client.recv(1 << 16):
                pass
        except BlockingIOError:
            pass


def _start_reader(clients: list[socket.socket], round_bytes: int) -> tuple[int, tuple[int, int]]:
    """Fork a process that reads ``clients`` as data comes and writes ``.`` to a pipe after
    each round; it ends when the pipe's other direction closes. Returns its pid and the
    parent's (read-the-dots, close-to-stop) descriptors."""
    dots_read, dots_write = os.pipe()
    stop_read, stop_write = os.pipe()
    pid = os.fork()
    if pid:
        os.close(dots_write)
        os.close(stop_read)
        return pid, (dots_read, stop_write)
    os.close(dots_read)
    os.close(stop_write)
    try:
        _read_rounds(clients, round_bytes, dots_write, stop_read)
    finally:
        os._exit(0)


def _read_rounds(clients: list[socket.socket], round_bytes: int, dots: int, stop: int) -> None:
    selector = selectors.DefaultSelector()
    for client in clients:
        selector.register(client, selectors.EVENT_READ)
    selector.register(stop, selectors.EVENT_READ)
    unread = round_bytes
    while True:
        for key, _ in selector.select():
            if key.fd == stop:
                return
            unread -= len(cast(socket.socket, key.fileobj).recv(1 << 16))
            if unread <= 0:
                unread += round_bytes
                os.write(dots, b".")


def cpu_per_frame_us(write: Callable[[], None], count: int, receivers: Receivers) -> float:
    """One round: ``write`` writes the frame to every connection; CPU µs per frame."""
    started = time.process_time()
    write()
    spent = time.process_time() - started
    receivers.read_round()
    return spent / count * 1e6


async def measure(count: int, rounds: int, in_process: bool, send_buffer: int) -> dict[str, float]:
    transports, clients = await connected(count)
    sockets = [transport.get_extra_info("socket") for transport in transports]
    if send_buffer:
        for sock in sockets:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    descriptors = [sock.fileno() for sock in sockets]
    receivers = Receivers(clients, in_process, len(FRAME))

    def through_transport() -> None:
        for transport in transports:
            transport.write(FRAME)

    def system_call() -> None:
        for descriptor in descriptors:
            os.write(descriptor, FRAME)

    samples: dict[str, list[float]] = {"transport.write": [], "os.write": []}
    try:
        for _ in range(rounds):
            samples["transport.write"].append(cpu_per_frame_us(through_transport, count, receivers))
            samples["os.write"].append(cpu_per_frame_us(system_call, count, receivers))
    finally:
        for transport in transports:
            transport.close()
        receivers.close()
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.writepath", description=__doc__)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--receiver", choices=("here", "process"), default="here")
    parser.add_argument(
        "--send-buffer", type=int, default=0, help="SO_SNDBUF in bytes, as WS_SEND_BUFFER_BYTES"
    )
    args = parser.parse_args(argv)
    print(
        f"{len(FRAME)}-byte frame, {args.connections:,} connections, {args.rounds} rounds,"
        f" receivers {'in a process of their own' if args.receiver == 'process' else 'here'},"
        f" send buffer {args.send_buffer or 'the kernel default'}"
    )
    print("| loop | transport.write us/frame | os.write us/frame | ratio |")
    print("|---|---:|---:|---:|")
    for name, new_loop in LOOPS.items():
        with asyncio.Runner(loop_factory=new_loop) as runner:
            cost = runner.run(
                measure(args.connections, args.rounds, args.receiver == "process", args.send_buffer)
            )
        through, direct = cost["transport.write"], cost["os.write"]
        print(f"| {name} | {through:.2f} | {direct:.2f} | {through / direct:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
