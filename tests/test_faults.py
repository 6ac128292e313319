"""Faults injected for real while load runs: Redis crashes, Sentinel failover,
reconnect storms and clients that stop reading. Each checks the totals.

Marked slow: run alone with  pytest -m slow
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from ws_counter.tools.cluster import ClusterOptions, LocalCluster
from ws_counter.tools.processes import free_port
from ws_counter.tools.redissecurity import RedisSecurity
from ws_counter.worker.store.keys import channel_name, state_key

from .clients import counter_url, receive, receive_until
from .conftest import RedisServer, WorkerProcess, http_get, seconds
from .loadrun import BackgroundLoadtest
from .sentinel import MASTER_NAME, SentinelSet

pytestmark = pytest.mark.slow


def assert_exact(status: int, report: dict[str, Any] | None, output: str) -> None:
    """The load test passed, and nothing it sent was lost (every increment acknowledged)."""
    assert status == 0, output
    assert report is not None and report["correct"] is True, output
    assert report["increments_acked"] == report["increments_sent"], output
    assert report["observed_total"] == report["expected_total"]
    print(
        f"\n{report['increments_acked']} acknowledged, total {report['observed_total']} exact;"
        f" ack p50 {report['ack_ms']['p50']:.1f} ms p99 {report['ack_ms']['p99']:.1f} ms;"
        f" errors seen {report['error_codes']}; reconnects {report['reconnects']};"
        f" epoch changes seen {report['epoch_changes_seen']}"
    )


def test_redis_crash_and_restart_mid_load_loses_no_acknowledged_increment(
    tmp_path: Path,
) -> None:
    """SIGKILL Redis under load, start it again on its AOF: clients stay, totals exact."""
    options = ClusterOptions(
        workers=2, port=free_port(), worker_env={"REDIS_TIMEOUT": "1"}, log_dir=tmp_path
    )
    with LocalCluster(options) as cluster:
        run = BackgroundLoadtest(
            cluster.url,
            *("--clients", "60", "--rate", "150", "--duration", "8", "--counter", "crash"),
            json_path=tmp_path / "report.json",
        )
        run.wait_until_acking()
        marks = [worker.mark() for worker in cluster.workers]
        cluster.stop_redis(signal.SIGKILL)
        for worker, mark in zip(cluster.workers, marks, strict=True):
            worker.wait_for_line(lambda line: '"event": "redis_lost"' in line, seconds(10), mark)
        status, _ = http_get(cluster.worker_url(0).replace("ws://", "http://") + "readyz")
        assert status == 503
        marks = [worker.mark() for worker in cluster.workers]
        cluster.start_redis()
        for worker, mark in zip(cluster.workers, marks, strict=True):
            worker.wait_for_line(lambda line: '"event": "ready"' in line, seconds(20), mark)
        status, report = run.finish()
    assert_exact(status, report, run.output)
    assert report is not None
    assert report["error_codes"].get("unavailable", 0) > 0, "the outage was not hit"
    assert report["close_codes"] == {"1000": 60}, "clients stayed connected through the outage"


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "tls-acl"])
def test_sentinel_failover_mid_load_keeps_every_acknowledged_increment(
    tmp_path: Path, secure: bool
) -> None:
    """SENTINEL FAILOVER under load: workers follow the new master. REDIS_REPLICA_ACKS equals
    the number of replicas (1), so every acknowledged increment is on whichever replica takes
    over; states only the old master had get a new epoch, and the totals add up. Secure:
    TLS everywhere, the Sentinels' own password, and the worker's least-privilege user."""
    security = RedisSecurity(tmp_path / "tls") if secure else None
    sentinels = SentinelSet(tmp_path / "redis", security).start()
    port = free_port()
    env = {
        **sentinels.worker_env(),
        "REDIS_REPLICA_ACKS": "1",
        "REDIS_TIMEOUT": "1",
        "WS_REUSE_PORT": "true",
        "WS_PORT": str(port),
    }
    workers = [WorkerProcess("redis://unused", env) for _ in range(2)]
    try:
        for worker in workers:
            worker.port = port
            worker.start()
        run = BackgroundLoadtest(
            f"ws://127.0.0.1:{port}/",
            *("--clients", "40", "--rate", "150", "--duration", "10", "--counter", "failover"),
            json_path=tmp_path / "report.json",
        )
        run.wait_until_acking()
        mark = sentinels.sentinels[0].mark()
        sentinels.cli(
            sentinels.sentinel_ports[0], "SENTINEL", "FAILOVER", MASTER_NAME, sentinel=True
        )
        switched = sentinels.sentinels[0].wait_for_line(
            lambda line: "+switch-master" in line, seconds(30), mark
        )
        status, report = run.finish()
        new_master = int(switched.split()[-1])
        assert new_master == sentinels.ports["b"]
        # What the load test saw acknowledged is what the new master holds.
        held = sentinels.cli(new_master, "HGET", state_key("failover"), "total")
    finally:
        for worker in workers:
            worker.stop()
        sentinels.stop()
    assert_exact(status, report, run.output)
    assert report is not None and int(held) == report["expected_total"]


async def _connect_all(urls: list[str]) -> tuple[list[ClientConnection], list[int]]:
    """Open every URL at once; returns the connections and the refusal statuses."""
    results = await asyncio.gather(
        *(connect(url, open_timeout=seconds(20)) for url in urls), return_exceptions=True
    )
    opened = [r for r in results if isinstance(r, ClientConnection)]
    refused = [r.response.status_code for r in results if isinstance(r, InvalidStatus)]
    others = [
        r for r in results if isinstance(r, BaseException) and not isinstance(r, InvalidStatus)
    ]
    assert not others, f"handshakes failed other than with a status: {others[:3]}"
    return opened, refused


async def _probe_acks(url: str, count: int) -> list[float]:
    """Ack latencies (ms) of ``count`` sequential increments on a fresh connection."""
    latencies = []
    async with connect(url) as probe:
        await receive(probe)
        for n in range(count):
            started = time.perf_counter()
            await probe.send(f'{{"op": "incr", "by": 1, "id": "probe-{n}"}}')
            await receive_until(probe, lambda m: m["type"] in ("ack", "error"))
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def test_reconnect_storm_is_absorbed_and_excess_handshakes_get_503(
    redis_server: RedisServer, counter_name: str
) -> None:
    """2,000 clients of a killed worker reconnect at once to a survivor already holding 1,000
    with a limit of 2,500: the excess gets HTTP 503 at once, the survivor keeps acking
    (p99 under 2 s while the storm lands), and every connected client converges."""
    leaving = WorkerProcess(redis_server.url).start()
    staying = WorkerProcess(redis_server.url, {"WS_MAX_CONNECTIONS": "2500"}).start()

    async def scenario() -> None:
        settled, refused = await _connect_all([counter_url(staying, counter_name)] * 1000)
        assert not refused
        doomed, refused = await _connect_all([counter_url(leaving, counter_name)] * 2000)
        assert not refused
        assert leaving.child is not None
        leaving.child.kill()
        probe = asyncio.create_task(_probe_acks(counter_url(staying, counter_name), 100))
        started = time.monotonic()
        storm, refused = await _connect_all([counter_url(staying, counter_name)] * 2000)
        storm_seconds = time.monotonic() - started
        latencies = await probe
        p99 = statistics.quantiles(latencies, n=100)[98]
        print(
            f"\nstorm: {len(storm)} reconnected, {len(refused)} refused with "
            f"{sorted(set(refused))} in {storm_seconds:.2f}s; probe ack p50 "
            f"{statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms"
        )
        # 2,500 slots: 1,000 settled clients, the probe (if it got in first) and the storm.
        assert len(storm) + len(refused) == 2000 and set(refused) == {503}
        assert len(storm) in (1499, 1500)
        assert p99 < seconds(2) * 1000
        everyone = [*settled, *storm]
        for client in everyone[:: len(everyone) // 50]:
            await receive_until(
                client, lambda m: m["type"] == "total" and m["seq"] == 100, timeout=30
            )
        await asyncio.gather(
            *(c.close() for c in everyone), *(c.close() for c in doomed), return_exceptions=True
        )

    try:
        asyncio.run(scenario())
    finally:
        leaving.stop()
        staying.stop()


def _raw_websocket(port: int, path: str, receive_buffer: int) -> socket.socket:
    """A handshake by hand, then nothing read: the client the worker must not queue for."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Before connecting, so that the advertised window is small from the start.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # byte by byte: leave every frame after the head unread
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _read_to_end(sock: socket.socket, timeout: float) -> tuple[bool, int | None]:
    """Read the stream to its end: whether the worker closed it, and the close code if the
    close frame got through (it often cannot: the client's window is still full)."""
    sock.settimeout(timeout)
    data, ended = b"", False
    try:
        while chunk := sock.recv(1 << 16):
            data += chunk
        ended = True
    except ConnectionResetError:
        ended = True
    except TimeoutError:
        pass
    position, code = 0, None
    while position + 2 <= len(data):
        opcode, length = data[position] & 0x0F, data[position + 1] & 0x7F
        position += 2
        if length == 126:
            length = int.from_bytes(data[position : position + 2], "big")
            position += 2
        elif length == 127:
            length = int.from_bytes(data[position : position + 8], "big")
            position += 8
        if opcode == 0x8 and length >= 2:
            code = int.from_bytes(data[position : position + 2], "big")
        position += length
    return ended, code


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# Published in this many chunks, each awaited by a reading client.
CHUNKS = 200


def test_clients_that_stop_reading_cost_bounded_memory_and_are_closed_with_1008(
    redis_server: RedisServer, counter_name: str
) -> None:
    """200 clients stop reading while 10,000 updates are published: the worker keeps at most
    the newest total for each (memory stays flat), a reading client keeps up, and the stuck
    ones are closed (1008) after the slow-client timeout."""
    worker = WorkerProcess(
        redis_server.url, {"WS_SLOW_CLIENT_TIMEOUT": "6", "WS_PING_INTERVAL": "0"}
    ).start()
    assert worker.child is not None and worker.child.pid is not None
    path = f"/counters/{counter_name}"
    stuck = [_raw_websocket(worker.port, path, 4096) for _ in range(200)]
    epoch = redis_server.cli("HGET", state_key(counter_name), "epoch")
    before = _rss_kib(worker.child.pid)
    updates = 10_000
    payload_total = 10**15  # long totals: bigger frames fill buffers sooner

    async def scenario() -> float:
        async with (
            connect(counter_url(worker, counter_name)) as reader,
            aioredis.Redis(port=redis_server.port) as publisher,
        ):
            await receive(reader)
            started = time.monotonic()
            # In chunks, each awaited by the reading client: every chunk's last state
            # reaches every client in at least one pass, so each stuck client is
            # offered at least CHUNKS frames (about 14 KB) however much the worker
            # conflates, more than its kernel buffers hold.
            for first in range(1, updates + 1, updates // CHUNKS):
                last = first + updates // CHUNKS - 1
                async with publisher.pipeline(transaction=False) as pipe:
                    for seq in range(first, last + 1):
                        pipe.publish(
                            channel_name(counter_name), f"{epoch} {seq} {payload_total + seq}"
                        )
                    await pipe.execute()
                await receive_until(reader, lambda m, last=last: m["seq"] >= last, timeout=30)  # type: ignore[misc]
            return time.monotonic() - started

    reader_seconds = asyncio.run(scenario())
    after = _rss_kib(worker.child.pid)
    _, metrics = http_get(worker.http + "/metrics")
    print(
        f"\nslow clients: RSS {before} KiB -> {after} KiB after {updates} updates to "
        f"{len(stuck)} stuck clients; the reading client had them all in {reader_seconds:.2f}s"
    )
    # Unbounded queues would hold 200 x 10,000 frames of ~100 bytes: about 200 MB.
    assert after - before < 30 * 1024
    assert "ws_counter_totals_conflated_total" in metrics
    # Reading would make them writable again, and so no longer slow: first let
    # the worker close every one of them, then look at what each received.
    worker.child.wait_for_lines(
        lambda line: '"event": "slow_client_closed"' in line, len(stuck), seconds(60)
    )
    endings = [_read_to_end(sock, timeout=seconds(30)) for sock in stuck]
    for sock in stuck:
        sock.close()
    _, metrics = http_get(worker.http + "/metrics")
    worker.stop()
    assert all(ended for ended, _ in endings), "a stuck client was never closed"
    assert {code for _, code in endings} <= {1008, None}
    assert "ws_counter_slow_clients_closed_total 200.0" in metrics
