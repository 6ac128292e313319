"""Origin checks, rate limits, signed tokens and /metrics on real workers."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from ws_counter.worker.core.auth import issue

from .clients import counter_url, receive, receive_until
from .conftest import RedisServer, StartWorker, WorkerProcess, http_get, seconds

SECRET = "0123456789abcdef0123456789abcdef-test-only"


async def refused_status(url: str, **kwargs: object) -> int:
    with pytest.raises(InvalidStatus) as caught:
        await connect(url, **kwargs)  # type: ignore[arg-type]
    return caught.value.response.status_code


def test_origin_allow_list_refuses_cross_site_handshakes(
    start_worker: StartWorker, counter_name: str
) -> None:
    worker = start_worker(WS_ALLOWED_ORIGINS="https://counter.example")
    url = counter_url(worker, counter_name)

    async def scenario() -> None:
        assert await refused_status(url, origin="https://evil.example") == 403
        async with connect(url, origin=Origin("https://counter.example")) as browser:
            assert (await receive(browser))["type"] == "total"
        # Programs that send no Origin are not browsers: nothing to forge.
        async with connect(url) as program:
            assert (await receive(program))["type"] == "total"

    asyncio.run(scenario())


def test_rate_limit_refuses_the_excess_with_a_clear_error(
    start_worker: StartWorker, counter_name: str
) -> None:
    worker = start_worker(WS_RATE_LIMIT="1", WS_RATE_BURST="3")

    async def scenario() -> None:
        async with connect(counter_url(worker, counter_name)) as client:
            await receive(client)
            for n in range(6):
                await client.send(f'{{"op": "incr", "by": 1, "id": "r{n}"}}')
            replies = [
                await receive_until(client, lambda m: m["type"] in ("ack", "error"))
                for _ in range(6)
            ]
            acks = [m for m in replies if m["type"] == "ack"]
            errors = [m for m in replies if m["type"] == "error"]
            assert len(acks) == 3
            assert {m["code"] for m in errors} == {"rate_limited"}
            assert "increments per second" in errors[0]["message"]
            assert max(m["total"] for m in acks) == 3

    asyncio.run(scenario())


def test_tokens_decide_who_reads_and_who_increments(
    start_worker: StartWorker, counter_name: str
) -> None:
    worker = start_worker(WS_JWT_SECRET=SECRET)
    url = counter_url(worker, counter_name)
    reader = issue(SECRET, read=[counter_name], incr=[])
    writer = issue(SECRET, read=[], incr=[counter_name])
    stranger = issue(SECRET, read=["somewhere-else"], incr=[])

    async def scenario() -> None:
        assert await refused_status(url) == 401
        assert await refused_status(url + "?token=forged") == 401
        assert await refused_status(f"{url}?token={stranger}") == 403
        async with (
            connect(f"{url}?token={reader}") as watching,
            connect(url, additional_headers={"Authorization": f"Bearer {writer}"}) as writing,
        ):
            await receive(watching)
            await receive(writing)
            await watching.send('{"op": "incr", "by": 100, "id": "no"}')
            refused = await receive_until(watching, lambda m: m["type"] == "error")
            assert (refused["code"], refused["id"]) == ("forbidden", "no")
            await writing.send('{"op": "incr", "by": 2, "id": "yes"}')
            ack = await receive_until(writing, lambda m: m["type"] == "ack")
            assert (ack["total"], ack["seq"]) == (2, 1)
            seen = await receive_until(watching, lambda m: m["type"] == "total")
            assert (seen["total"], seen["seq"]) == (2, 1)

    asyncio.run(scenario())


def test_token_secret_can_come_from_a_file(
    redis_server: RedisServer, tmp_path: Path, counter_name: str
) -> None:
    secret_file = tmp_path / "jwt-secret"
    secret_file.write_text(SECRET + "\n")
    worker = WorkerProcess(redis_server.url, {"WS_JWT_SECRET_FILE": str(secret_file)}).start()
    try:
        token = issue(SECRET, read=["*"], incr=["*"])

        async def scenario() -> None:
            assert await refused_status(counter_url(worker, counter_name)) == 401
            async with connect(counter_url(worker, counter_name, f"?token={token}")) as client:
                assert (await receive(client))["type"] == "total"

        asyncio.run(scenario())
    finally:
        worker.stop()


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{name} missing from /metrics"
    return float(match.group(1))


def test_metrics_count_handshakes_increments_and_fan_out(
    start_worker: StartWorker, counter_name: str
) -> None:
    worker = start_worker()

    async def scenario() -> None:
        async with (
            connect(counter_url(worker, counter_name)) as one,
            connect(counter_url(worker, counter_name)) as two,
        ):
            await receive(one)
            await receive(two)
            await one.send("5")
            await one.send("nonsense")
            await receive_until(two, lambda m: m["type"] == "total")
            await receive_until(one, lambda m: m["type"] == "error")
            status, text = http_get(worker.http + "/metrics")
            assert status == 200
            assert metric(text, "ws_counter_connections") == 2
            assert metric(text, 'ws_counter_handshakes_total{outcome="accepted"}') == 2
            assert metric(text, 'ws_counter_increments_total{outcome="applied"}') == 1
            assert metric(text, 'ws_counter_increments_total{outcome="invalid"}') == 1
            assert metric(text, "ws_counter_totals_sent_total") >= 2
            assert metric(text, "ws_counter_fanout_lag_seconds_count") >= 1
        await refused_status(counter_url(worker, "BAD"))
        _, text = http_get(worker.http + "/metrics")
        assert metric(text, 'ws_counter_handshakes_total{outcome="400"}') == 1

    asyncio.run(scenario())


def test_a_handshake_that_never_comes_is_cut_off(start_worker: StartWorker) -> None:
    """A client that opens TCP and sends nothing is dropped after WS_OPEN_TIMEOUT."""
    worker = start_worker(WS_OPEN_TIMEOUT="1")
    with socket.create_connection(("127.0.0.1", worker.port)) as silent:
        silent.settimeout(seconds(10))
        started = time.monotonic()
        assert silent.recv(1024) == b""  # the worker closed the connection
        assert time.monotonic() - started < seconds(10)
