"""A TCP relay that delays every chunk of data, each way: the slow-network nemesis where the
kernel has no tc netem.

``python -m faults.relay LISTEN_PORT TARGET_PORT DELAY JITTER`` listens on
every address of its namespace and relays to 127.0.0.1:TARGET_PORT; each chunk
leaves DELAY ± JITTER seconds after it arrived, never before an earlier one.
Prints ``ready`` once listening; exits when its standard input ends. SIGUSR1
heals: connections stay, the delay goes (as removing a netem qdisc would).
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys

# The delay and jitter in force; SIGUSR1 sets both to 0.
SLOW = {"delay": 0.0, "jitter": 0.0}


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer``, each chunk delayed; ends with either side."""
    loop = asyncio.get_running_loop()
    # Bounded: a side that stops reading stops this pump reading from the other,
    # as TCP's own window would; the relay never holds more than 64 chunks a way.
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=64)
    due = 0.0

    async def deliver() -> None:
        while True:
            at, data = await queue.get()
            await asyncio.sleep(max(0.0, at - loop.time()))
            if not data:
                return
            writer.write(data)
            await writer.drain()

    async def receive() -> None:
        nonlocal due
        while True:
            data = await reader.read(65536)
            jitter = random.uniform(-SLOW["jitter"], SLOW["jitter"])
            due = max(due, loop.time() + SLOW["delay"] + jitter)
            await queue.put((due, data))
            if not data:
                return

    tasks = [asyncio.create_task(deliver()), asyncio.create_task(receive())]
    try:
        # Delivery ends the pump (its end of file, or a side's error); so does a read error.
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        if tasks[1] in done and tasks[1].exception() is None:
            await tasks[0]
    except (ConnectionError, OSError):
        pass
    finally:
        for task in tasks:
            task.cancel()
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
        # The relay lives as long as the lab that started it: its standard input
        # is the lab's pipe, which ends when the lab's process does, however it ends.
        await asyncio.to_thread(sys.stdin.buffer.read)


if __name__ == "__main__":
    listen, target, delay, jitter = sys.argv[1:5]
    asyncio.run(main(int(listen), int(target), float(delay), float(jitter)))
