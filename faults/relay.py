"""A TCP relay that delays every chunk of data, each way: the slow-network nemesis where the
kernel has no tc netem.

``python -m faults.relay LISTEN_PORT TARGET_PORT DELAY JITTER`` listens on
every address of its namespace and relays to 127.0.0.1:TARGET_PORT; each chunk
leaves DELAY ± JITTER seconds after it arrived, never before an earlier one.
Prints ``ready`` once listening. SIGUSR1 heals: connections stay, the delay
goes (as removing a netem qdisc would).
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys

# The delay and jitter in force; SIGUSR1 sets both to 0.
SLOW = {"delay": 0.0, "jitter": 0.0}


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    due = 0.0

    async def deliver() -> None:
        while True:
            at, data = await queue.get()
            await asyncio.sleep(max(0.0, at - loop.time()))
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    delivering = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(65536)
            jitter = random.uniform(-SLOW["jitter"], SLOW["jitter"])
            due = max(due, loop.time() + SLOW["delay"] + jitter)
            queue.put_nowait((due, data))
            if not data:
                break
        await delivering
    except (ConnectionError, OSError):
        delivering.cancel()
        writer.close()


async def main(listen: int, target: int, delay: float, jitter: float) -> None:
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            pump(reader, up_writer), pump(up_reader, writer), return_exceptions=True
        )

    SLOW.update(delay=delay, jitter=jitter)
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGUSR1, lambda: SLOW.update(delay=0.0, jitter=0.0)
    )
    server = await asyncio.start_server(relay, "0.0.0.0", listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    listen, target, delay, jitter = sys.argv[1:5]
    asyncio.run(main(int(listen), int(target), float(delay), float(jitter)))
