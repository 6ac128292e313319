"""The websockets and loop internals the worker relies on, pinned against the installed versions.

``ws_counter.worker.server.wire`` is the one module that reaches past websockets'
documented API. Each test here drives one of its uses on a real websockets
server on loopback, under the stdlib loop and under uvloop (the worker's), so
an upgrade that moves one of them fails here. The last test holds the rule
that no other module reaches for those internals.
"""

from __future__ import annotations

import ast
import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import uvloop
import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosedError

from ws_counter.worker.server import wire

ROOT = Path(__file__).resolve().parent.parent
LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
Scenario = Callable[[ServerConnection], Awaitable[None]]


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Iterator[Callable[[Awaitable[None]], None]]:
    with asyncio.Runner(loop_factory=LOOPS[request.param]) as runner:

        def run_bounded(scenario: Awaitable[None]) -> None:
            async def bounded() -> None:
                async with asyncio.timeout(10):
                    await scenario

            runner.run(bounded())

        yield run_bounded


async def served(
    scenario: Scenario, client: Callable[[str], Awaitable[None]], **options: object
) -> None:
    """Serve one connection with ``scenario`` while ``client`` talks to it."""
    done = asyncio.get_running_loop().create_future()

    async def handler(connection: ServerConnection) -> None:
        try:
            await scenario(connection)
            done.set_result(None)
        except BaseException as exc:  # handed to the test, not swallowed by websockets
            done.set_exception(exc)

    async with serve(handler, "127.0.0.1", 0, **options) as server:  # type: ignore[arg-type]
        port = server.sockets[0].getsockname()[1]
        await asyncio.gather(client(f"ws://127.0.0.1:{port}/"), done)


def test_a_prebuilt_frame_written_to_the_transport_arrives_as_a_message(
    run: Callable[[Awaitable[None]], None],
) -> None:
    """``write`` of ``text_frame``: the bytes websockets would have sent for ``send(text)``."""

    async def scenario(connection: ServerConnection) -> None:
        assert wire.is_open(connection)
        assert not wire.has_extensions(connection)
        assert not wire.is_paused(connection)
        wire.limit_send_buffer(connection, 4096)
        sock = connection.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * 4096  # Linux doubles it
        wire.write(connection, wire.text_frame("one") + wire.text_frame('{"two":2}'))
        await connection.wait_closed()
        assert not wire.is_open(connection)

    async def client(uri: str) -> None:
        async with connect(uri, compression=None) as websocket:
            assert [await websocket.recv(), await websocket.recv()] == ["one", '{"two":2}']

    run(served(scenario, client, compression=None))


def test_a_connection_with_permessage_deflate_shows_its_extension(
    run: Callable[[Awaitable[None]], None],
) -> None:
    """With an extension negotiated the worker must let websockets build each frame."""

    async def scenario(connection: ServerConnection) -> None:
        assert wire.has_extensions(connection)
        wire.write_text(connection, "compressed")
        await connection.wait_closed()

    async def client(uri: str) -> None:
        async with connect(uri, compression="deflate") as websocket:
            assert await websocket.recv() == "compressed"

    run(served(scenario, client, compression="deflate"))


def test_a_peer_that_reads_nothing_pauses_the_transport_until_it_reads(
    run: Callable[[Awaitable[None]], None],
) -> None:
    """``paused`` turns True above the high-water mark; ``drain`` returns once the peer reads."""
    reading = asyncio.Event()
    frame = wire.text_frame("x" * (1 << 20))

    async def scenario(connection: ServerConnection) -> None:
        # Bounded: the kernel's buffers (tcp_wmem's and tcp_rmem's maximum, 4 and
        # 6 MiB by default) fill, then the transport's, which pauses it.
        for _ in range(64):
            if wire.is_paused(connection):
                break
            wire.write(connection, frame)
            await asyncio.sleep(0.001)  # let the loop flush into the kernel
        assert wire.is_paused(connection), "the transport never paused"
        # Well above the mark, so that it stays paused while the peer reads nothing.
        for _ in range(8):
            wire.write(connection, frame)
        draining = asyncio.ensure_future(wire.drain(connection))
        await asyncio.sleep(0.05)
        assert not draining.done(), "drain returned while the peer read nothing"
        reading.set()
        await draining
        assert not wire.is_paused(connection)
        await connection.close()

    async def client(uri: str) -> None:
        async with connect(uri, compression=None, max_size=None, max_queue=None) as websocket:
            websocket.transport.pause_reading()  # a peer that reads nothing
            await reading.wait()
            websocket.transport.resume_reading()
            with pytest.raises(websockets.ConnectionClosedOK):
                while True:
                    await websocket.recv()

    run(served(scenario, client, compression=None, write_limit=16 * 1024))


def test_abort_drops_the_connection_without_a_close_frame(
    run: Callable[[Awaitable[None]], None],
) -> None:
    """What a slow client gets when even its close frame cannot be written."""

    async def scenario(connection: ServerConnection) -> None:
        wire.abort(connection)
        await connection.wait_closed()

    async def client(uri: str) -> None:
        async with connect(uri) as websocket:
            with pytest.raises(ConnectionClosedError) as closed:
                await websocket.recv()
            assert closed.value.rcvd is None

    run(served(scenario, client))


def test_front_connection_overrides_callbacks_websockets_defines() -> None:
    """Each asyncio.Protocol callback FrontConnection takes over is one websockets implements."""
    base = ServerConnection.__mro__[1]
    for name in (
        "connection_made",
        "data_received",
        "eof_received",
        "connection_lost",
        "pause_writing",
        "resume_writing",
    ):
        assert name in vars(base), f"websockets' Connection no longer defines {name}"
        assert name in vars(wire.FrontConnection)


# asyncio's own Protocol keeps the transport asyncio hands it in connection_made:
# that is asyncio's documented API, not websockets' internals.
OWN_TRANSPORT = {ROOT / "worker" / "server" / "http.py"}
WATCHED = {"transport", "paused"}


def reaches_for_internals(path: Path) -> Iterator[str]:
    """``transport``, ``paused``, ``protocol.state`` and another object's ``_name`` in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Attribute):
            continue
        owner = ast.unparse(node.value)
        private = node.attr.startswith("_") and not node.attr.startswith("__")
        watched = node.attr in WATCHED and not (path in OWN_TRANSPORT and owner == "self")
        state = node.attr == "state" and owner.endswith("protocol")
        foreign = private and owner not in ("self", "cls", "super()", "argparse")
        if watched or state or foreign:
            yield f"{path.relative_to(ROOT)}:{node.lineno}: {owner}.{node.attr}"


@pytest.mark.unit
def test_no_module_but_wire_reaches_for_websockets_or_loop_internals() -> None:
    """The worker, the client library and the tools leave those internals to ``wire``."""
    shipped = [ROOT / "worker", ROOT / "ws_counter_client", ROOT / "tools"]
    found = [
        hit
        for folder in shipped
        for path in sorted(folder.rglob("*.py"))
        if path != ROOT / "worker" / "server" / "wire.py"
        for hit in reaches_for_internals(path)
    ]
    assert found == []
