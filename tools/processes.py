"""Child processes that the cluster command and the tests start, watch and stop by pid.

Each child's output is read line by line on a thread, kept in a bounded
buffer and optionally written to a log file; readiness is awaited by waiting
on a condition for a matching line (or the child's exit), never by polling.
"""

from __future__ import annotations

import collections
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import IO


class ChildFailed(RuntimeError):
    """A child exited or did not become ready in time; the message quotes its last output."""


# Ports the launcher picks lie below the kernel's range for the local ports of
# outgoing connections: no connection of the load running beside a cluster can
# take one, neither between the pick and the start nor while a stopped process
# waits to be started again on the same port.
LOWEST_PICKED_PORT = 10000


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free now (another process could take it later, but no
    outgoing connection will)."""
    return free_ports(1, host=host)[0]


def free_ports(
    count: int,
    taken: Collection[int] = (),
    *,
    offsets: Sequence[int] = (0,),
    host: str = "127.0.0.1",
    attempts: int = 1000,
) -> list[int]:
    """``count`` ports, each free now together with ``port + offset`` for every offset,
    none of these equal to another's or to one in ``taken``."""
    highest = max(first_ephemeral_port() - 1 - max(offsets), LOWEST_PICKED_PORT + 1000)
    chosen: list[int] = []
    used = set(taken)
    for _ in range(attempts):
        if len(chosen) == count:
            break
        port = random.randint(LOWEST_PICKED_PORT, highest)
        group = [port + offset for offset in offsets]
        if not used.intersection(group) and all(_is_free(host, each) for each in group):
            chosen.append(port)
            used.update(group)
    if len(chosen) < count:
        raise RuntimeError(f"found {len(chosen)} of {count} free ports")
    return chosen


def first_ephemeral_port(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> int:
    """The lowest local port the kernel hands to outgoing connections (Linux' default 32768)."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class Child:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        log_path: Path | None = None,
        echo: Callable[[str, str], None] | None = None,
        stdin: bool = False,
    ) -> None:
        self.name = name
        self._stdin = stdin
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.log_path = log_path
        self._echo = echo
        self._lines: collections.deque[str] = collections.deque(maxlen=400)
        self._seen = 0
        self._changed = threading.Condition()
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._on_exit: Callable[[Child], None] | None = None
        self._ended = False  # set by the output thread, under _changed

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def start(self) -> Child:
        self._process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.PIPE if self._stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            # Own session: a Ctrl-C in the terminal reaches the parent only,
            # which then stops its children in order.
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"{self.name}-output", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        log: IO[str] | None = self.log_path.open("a") if self.log_path else None
        try:
            for raw_line in self._process.stdout:
                line = raw_line.rstrip("\n")
                if log:
                    log.write(line + "\n")
                    log.flush()
                if self._echo:
                    self._echo(self.name, line)
                with self._changed:
                    self._lines.append(line)
                    self._seen += 1
                    self._changed.notify_all()
        finally:
            if log:
                log.close()
            self._process.wait()
            with self._changed:
                self._ended = True
                self._changed.notify_all()
                on_exit = self._on_exit
            if on_exit is not None:
                on_exit(self)

    def on_exit(self, callback: Callable[[Child], None] | None) -> None:
        """Call ``callback(self)`` from the output thread once the process has ended (at
        once if it already has); None: no more."""
        with self._changed:
            self._on_exit = callback
            ended = self._ended
        # The output thread calls it once the process ends; if it already has, here.
        if callback is not None and ended:
            callback(self)

    def how_it_ended(self) -> str:
        code = self.returncode
        if code is None:
            return "still running"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exited with status {code}"

    def output(self) -> list[str]:
        with self._changed:
            return list(self._lines)

    def mark(self) -> int:
        """A position in the output: wait_for_line(after=mark) looks only at later lines."""
        with self._changed:
            return self._seen

    def wait_for_line(
        self, predicate: Callable[[str], bool], timeout: float, after: int = 0
    ) -> str:
        """Wait until a line printed after position ``after`` matches, or raise ChildFailed."""
        return self.wait_for_lines(predicate, 1, timeout, after)[0]

    def wait_for_lines(
        self, predicate: Callable[[str], bool], count: int, timeout: float, after: int = 0
    ) -> list[str]:
        """Wait until ``count`` lines printed after position ``after`` match."""
        deadline = time.monotonic() + timeout

        def matches() -> list[str]:
            fresh = min(self._seen - after, len(self._lines))
            lines = list(self._lines)[len(self._lines) - fresh :]
            return [line for line in lines if predicate(line)][:count]

        with self._changed:
            while True:
                found = matches()
                if len(found) >= count:
                    return found
                if self.returncode is not None and not (self._reader and self._reader.is_alive()):
                    raise ChildFailed(self._failure(f"exited with status {self.returncode}"))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ChildFailed(
                        self._failure(f"{len(found)} of {count} lines after {timeout:g}s")
                    )
                self._changed.wait(remaining)

    def _failure(self, what: str) -> str:
        tail = "\n".join(f"    {line}" for line in list(self._lines)[-15:])
        return f"{self.name} (pid {self._process.pid if self._process else '-'}) {what}:\n{tail}"

    def write_line(self, text: str) -> None:
        """Write one line to the child's standard input (started with stdin=True)."""
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(text + "\n")
        self._process.stdin.flush()

    def send_signal(self, signum: int) -> None:
        # Popen's own send_signal, not os.kill after poll(): the output thread reaps
        # the child as it exits, and poll() answers "running" while that thread
        # holds the wait; Popen's send_signal ignores a child gone meanwhile.
        if self._process is not None:
            self._process.send_signal(signum)

    def wait(self, timeout: float) -> int | None:
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10.0, signum: int = signal.SIGTERM) -> int | None:
        """Signal the child, wait for it, and kill it if it does not exit in time."""
        if self._process is None:
            return None
        self.send_signal(signum)
        code = self.wait(timeout)
        if code is None:
            self.send_signal(signal.SIGKILL)
            code = self.wait(timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        return code

    def kill(self) -> int | None:
        return self.stop(timeout=10.0, signum=signal.SIGKILL)


def rss_kib(pids: list[int]) -> int:
    """The resident memory of ``pids`` together, in KiB (from /proc)."""
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total
