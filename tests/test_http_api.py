"""The HTTP API against real workers, Redis and HAProxy on 127.0.0.1.

Every response body is also checked against the schema the worker's own
OpenAPI description gives for it, so the description cannot drift from the API.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
from collections.abc import Iterator
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as sync_connect

from ws_counter.tools.cluster import LocalCluster
from ws_counter.tools.processes import free_port
from ws_counter.worker.core.auth import issue

from .conftest import StartWorker, WorkerProcess, seconds
from .conftest import http_call as call

CLUSTER_WORKERS = 2
SECRET = "http-api-test-secret-of-enough-length"


_BASE: list[str] = []


@cache
def openapi() -> dict[str, Any]:
    """The description the worker serves at /openapi.json."""
    status, _, document = call(_BASE[0], "GET", "/openapi.json")
    assert status == 200
    assert isinstance(document, dict)
    return document


def conforms(document: Any, schema_name: str) -> None:
    """``document`` is valid against the OpenAPI description's schema of that name."""
    spec = openapi()
    schema = {**spec["components"]["schemas"][schema_name], "components": spec["components"]}
    jsonschema.validate(document, schema, cls=jsonschema.Draft202012Validator)


@pytest.fixture(scope="module", autouse=True)
def base(cluster: LocalCluster) -> Iterator[str]:
    """The cluster's HAProxy as an HTTP base URL."""
    url = cluster.url.replace("ws://", "http://").rstrip("/")
    _BASE[:] = [url]
    yield url
    openapi.cache_clear()


def test_openapi_description_is_valid_and_served(base: str) -> None:
    """The worker serves its OpenAPI description, and it is a valid OpenAPI document."""
    validate_openapi(openapi())
    assert {"/counters/{name}", "/counters/{name}/increments"} <= set(openapi()["paths"])


def test_get_returns_the_state_as_json(base: str, counter_name: str) -> None:
    status, headers, document = call(base, "GET", f"/counters/{counter_name}")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert set(document) == {"counter", "total", "seq", "epoch"}
    assert (document["counter"], document["total"], document["seq"]) == (counter_name, 0, 0)
    conforms(document, "State")


def test_get_without_json_accept_is_the_page(base: str, counter_name: str) -> None:
    status, headers, body = call(
        base, "GET", f"/counters/{counter_name}", headers={"Accept": "text/html"}
    )
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"<!doctype html>" in body


def test_post_reaches_websocket_clients_on_every_worker(
    cluster: LocalCluster, base: str, counter_name: str
) -> None:
    """An increment by POST is published like any other: every worker's clients get it."""

    async def scenario() -> list[dict[str, Any]]:
        clients = [
            await connect(cluster.worker_url(index) + f"counters/{counter_name}")
            for index in range(CLUSTER_WORKERS)
        ]
        for client in clients:
            json.loads(await client.recv())  # the snapshot
        loop = asyncio.get_running_loop()
        status, _, ack = await loop.run_in_executor(
            None,
            lambda: call(base, "POST", f"/counters/{counter_name}/increments", {"by": 7}),
        )
        assert status == 200, ack
        conforms(ack, "Ack")
        seen = []
        for client in clients:
            async with asyncio.timeout(seconds(10)):
                while (message := json.loads(await client.recv()))["type"] != "total":
                    pass
            seen.append(message)
            await client.close()
        return seen

    seen = asyncio.run(scenario())
    assert [(m["total"], m["seq"]) for m in seen] == [(7, 1)] * CLUSTER_WORKERS
    _, _, state = call(base, "GET", f"/counters/{counter_name}")
    assert (state["total"], state["seq"]) == (7, 1)


def test_retry_with_the_same_idempotency_key_is_applied_once(base: str, counter_name: str) -> None:
    path = f"/counters/{counter_name}/increments"
    key = {"Idempotency-Key": "order-1234"}
    first = call(base, "POST", path, {"by": 5}, key)
    again = call(base, "POST", path, {"by": 5}, key)
    assert first[0] == again[0] == 200
    assert first[2]["id"] == "order-1234" and "duplicate" not in first[2]
    assert again[2]["duplicate"] is True
    assert (again[2]["total"], again[2]["seq"]) == (first[2]["total"], first[2]["seq"]) == (5, 1)
    conforms(again[2], "Ack")
    assert call(base, "GET", f"/counters/{counter_name}")[2]["total"] == 5


def test_retry_of_a_session_increment_is_applied_once(base: str, counter_name: str) -> None:
    path = f"/counters/{counter_name}/increments"
    first = call(base, "POST", path, {"by": 2, "session": "backend-job-1", "n": 1})
    again = call(base, "POST", path, {"by": 2, "session": "backend-job-1", "n": 1})
    assert (first[0], again[0]) == (200, 200)
    assert again[2]["duplicate"] is True and again[2]["total"] == first[2]["total"] == 2
    gap = call(base, "POST", path, {"by": 2, "session": "backend-job-1", "n": 3})
    assert gap[0] == 409 and gap[2]["code"] == "out_of_order" and gap[2]["expected"] == 2
    conforms(gap[2], "Error")
    assert call(base, "GET", f"/counters/{counter_name}")[2]["total"] == 2


@pytest.mark.parametrize(
    "case",
    [
        ("POST", "/counters/{c}/increments", {"by": "5"}, {}, 400, "invalid_by"),
        ("POST", "/counters/{c}/increments", {}, {}, 400, "missing_by"),
        ("POST", "/counters/{c}/increments", {"by": 2**63}, {}, 400, "out_of_range"),
        ("POST", "/counters/{c}/increments", [1], {}, 400, "invalid_message"),
        (
            "POST",
            "/counters/{c}/increments",
            {"by": 1, "session": "x", "n": 1},
            {},
            400,
            "invalid_session",
        ),
        (
            "POST",
            "/counters/{c}/increments",
            {"by": 1},
            {"Idempotency-Key": "k" * 65},
            400,
            "invalid_id",
        ),
        (
            "POST",
            "/counters/{c}/increments",
            {"by": 1, "session": "abcdefgh", "n": 1},
            {"Idempotency-Key": "k"},
            400,
            "invalid_message",
        ),
        (
            "POST",
            "/counters/{c}/increments",
            {"by": 1},
            {"Content-Type": "text/plain"},
            415,
            "unsupported_media_type",
        ),
        ("POST", "/counters/Bad Name/increments", {"by": 1}, {}, 400, "bad_request"),
        ("GET", "/counters/{c}/increments", None, {}, 405, "method_not_allowed"),
        ("DELETE", "/counters/{c}", None, {}, 405, "method_not_allowed"),
        ("GET", "/nowhere", None, {}, 404, "not_found"),
    ],
)
def test_refusals_are_json_with_fitting_statuses(
    base: str, counter_name: str, case: tuple[str, str, Any, dict[str, str], int, str]
) -> None:
    method, path, body, headers, status, code = case
    got, found, document = call(
        base, method, path.format(c=counter_name).replace(" ", "%20"), body, headers
    )
    assert (got, document["code"]) == (status, code), document
    assert found["content-type"] == "application/json"
    conforms(document, "Error")
    if status == 405:
        assert "allow" in found
    assert call(base, "GET", f"/counters/{counter_name}")[2]["total"] == 0


def test_a_body_over_the_limit_is_413(base: str, counter_name: str) -> None:
    padding = "x" * 5000
    status, _, document = call(
        base, "POST", f"/counters/{counter_name}/increments", {"by": 1, "pad": padding}
    )
    assert (status, document["code"]) == (413, "too_large")
    conforms(document, "Error")


def test_tokens_go_in_the_authorization_header(
    start_worker: StartWorker, counter_name: str
) -> None:
    worker = start_worker(WS_JWT_SECRET=SECRET)
    path = f"/counters/{counter_name}/increments"
    missing = call(worker.http, "POST", path, {"by": 1})
    assert (missing[0], missing[2]["code"]) == (401, "unauthorized")
    assert missing[1]["www-authenticate"] == "Bearer"
    bad = call(worker.http, "POST", path, {"by": 1}, {"Authorization": "Bearer nonsense"})
    assert bad[0] == 401
    reader = issue(SECRET, read=[counter_name], incr=[])
    forbidden = call(worker.http, "POST", path, {"by": 1}, {"Authorization": f"Bearer {reader}"})
    assert (forbidden[0], forbidden[2]["code"]) == (403, "forbidden")
    other = issue(SECRET, read=["someone-else"], incr=[])
    assert (
        call(
            worker.http,
            "GET",
            f"/counters/{counter_name}",
            headers={"Authorization": f"Bearer {other}"},
        )[0]
        == 403
    )
    assert (
        call(
            worker.http,
            "GET",
            f"/counters/{counter_name}",
            headers={"Authorization": f"Bearer {reader}"},
        )[0]
        == 200
    )
    writer = issue(SECRET, read=[], incr=[counter_name])
    done = call(worker.http, "POST", path, {"by": 3}, {"Authorization": f"Bearer {writer}"})
    assert (done[0], done[2]["total"]) == (200, 3)


def test_the_rate_limit_applies_per_connection_with_429(
    start_worker: StartWorker, counter_name: str
) -> None:
    """WS_RATE_LIMIT=1 with a burst of 2: the third POST on one kept-alive connection is refused."""
    worker = start_worker(WS_RATE_LIMIT="1", WS_RATE_BURST="2")
    connection = http.client.HTTPConnection("127.0.0.1", worker.port, timeout=seconds(10))
    statuses = []
    for n in (1, 2, 3):
        body = json.dumps({"by": 1, "session": "rate-limit-session", "n": n})
        connection.request(
            "POST",
            f"/counters/{counter_name}/increments",
            body,
            {"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        document = json.loads(response.read())
        statuses.append((response.status, document.get("code")))
        retry_after = response.getheader("Retry-After")
    connection.close()
    assert statuses == [(200, None), (200, None), (429, "rate_limited")]
    assert retry_after == "1"


def test_without_redis_increments_get_503(scratch: Any, counter_name: str) -> None:
    """A worker whose Redis is gone answers 503 with Retry-After; nothing is applied."""
    worker = WorkerProcess(f"redis://127.0.0.1:{free_port()}/0").start(wait_ready=False)
    try:
        deadline = time.monotonic() + seconds(10)
        status, found, document = call(
            worker.http, "POST", f"/counters/{counter_name}/increments", {"by": 1}
        )
        while status != 503 and time.monotonic() < deadline:
            status, found, document = call(
                worker.http, "POST", f"/counters/{counter_name}/increments", {"by": 1}
            )
        assert (status, document["code"]) == (503, "unavailable")
        assert found["retry-after"] == "1"
        conforms(document, "Error")
        state = call(worker.http, "GET", f"/counters/{counter_name}")
        assert state[0] == 503
    finally:
        worker.stop()


def test_keep_alive_serves_many_requests_on_one_connection(base: str, counter_name: str) -> None:
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(str(parts.hostname), parts.port, timeout=seconds(10))
    for n in range(1, 6):
        connection.request(
            "POST",
            f"/counters/{counter_name}/increments",
            json.dumps({"by": n, "session": "keep-alive-session", "n": n}),
            {"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["seq"] == n
    connection.close()


def test_a_drain_closes_idle_keep_alive_connections(
    start_worker: StartWorker, counter_name: str
) -> None:
    """SIGTERM: an idle keep-alive connection is closed at once, so the worker exits
    cleanly long before its drain timeout (60 s here) would end the wait."""
    worker = start_worker(WS_DRAIN_TIMEOUT="60")
    connection = http.client.HTTPConnection("127.0.0.1", worker.port, timeout=seconds(10))
    connection.request("GET", f"/counters/{counter_name}", headers={"Accept": "application/json"})
    response = connection.getresponse()
    assert response.status == 200
    response.read()
    assert worker.stop() == 0
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        connection.request("GET", "/healthz")
        connection.getresponse()
    connection.close()


def test_a_head_over_16_kib_is_refused_with_431(start_worker: StartWorker) -> None:
    """Straight to a worker: HAProxy in front refuses such a head itself (400)."""
    worker = start_worker()
    with socket.create_connection(("127.0.0.1", worker.port), timeout=seconds(10)) as peer:
        peer.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 20000 + b"\r\n\r\n"
        )
        answer = _read_all(peer)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_a_request_that_never_completes_is_dropped_after_the_open_timeout(
    start_worker: StartWorker,
) -> None:
    """A peer that sends part of a request head and stops is disconnected once
    WS_OPEN_TIMEOUT (1 s here) has passed; the socket read below waits for that."""
    worker = start_worker(WS_OPEN_TIMEOUT="1")
    with socket.create_connection(("127.0.0.1", worker.port), timeout=seconds(15)) as peer:
        peer.sendall(b"POST /counters/slow/increments HTTP/1.1\r\nHost: x\r\n")
        assert _read_all(peer) == b""
    with socket.create_connection(("127.0.0.1", worker.port), timeout=seconds(15)) as peer:
        peer.sendall(
            b"POST /counters/slow/increments HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 20\r\n\r\n{"by"'
        )
        assert _read_all(peer) == b""


def _read_all(peer: socket.socket) -> bytes:
    chunks = []
    while chunk := peer.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_http_connections_count_toward_the_connection_limit(
    start_worker: StartWorker, counter_name: str
) -> None:
    """WS_MAX_CONNECTIONS=1 and one WebSocket open: a plain HTTP connection gets 503."""
    worker = start_worker(WS_MAX_CONNECTIONS="1")
    with sync_connect(f"{worker.url}counters/{counter_name}") as websocket:
        websocket.recv(timeout=seconds(10))
        status, found, document = call(worker.http, "GET", f"/counters/{counter_name}")
    assert (status, document["code"]) == (503, "unavailable")
    assert found["retry-after"] == "1"


def test_a_client_that_half_closes_after_its_request_still_gets_the_answer(
    start_worker: StartWorker, counter_name: str
) -> None:
    """Straight to a worker (HAProxy in front would keep its own side open)."""
    worker = start_worker()
    body = b'{"by": 4}'
    with socket.create_connection(("127.0.0.1", worker.port), timeout=seconds(10)) as peer:
        peer.sendall(
            b"POST /counters/%s/increments HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (counter_name.encode(), len(body), body)
        )
        peer.shutdown(socket.SHUT_WR)
        answer = _read_all(peer)
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["total"] == 4


def test_a_kept_alive_http_connection_counts_against_websocket_handshakes(
    start_worker: StartWorker, counter_name: str
) -> None:
    """WS_MAX_CONNECTIONS=1 and one HTTP connection kept alive: a handshake gets 503."""
    worker = start_worker(WS_MAX_CONNECTIONS="1")
    kept = http.client.HTTPConnection("127.0.0.1", worker.port, timeout=seconds(10))
    kept.request("GET", f"/counters/{counter_name}", headers={"Accept": "application/json"})
    response = kept.getresponse()
    response.read()
    assert response.status == 200
    with pytest.raises(InvalidStatus) as refused:
        sync_connect(f"{worker.url}counters/{counter_name}", open_timeout=seconds(10))
    kept.close()
    assert refused.value.response.status_code == 503


def test_client_js_is_importable_across_origins_as_the_allow_list_says(
    start_worker: StartWorker, base: str
) -> None:
    """/client.js carries Access-Control-Allow-Origin: * without WS_ALLOWED_ORIGINS, and with
    it only a listed page's origin (the list that governs the WebSocket)."""
    status, headers, _ = call(base, "GET", "/client.js", headers={"Origin": "https://a.example"})
    assert status == 200 and headers["access-control-allow-origin"] == "*"
    worker = start_worker(WS_ALLOWED_ORIGINS="https://a.example")
    listed = call(worker.http, "GET", "/client.js", headers={"Origin": "https://a.example"})
    assert listed[1]["access-control-allow-origin"] == "https://a.example"
    assert listed[1]["vary"] == "Origin"
    other = call(worker.http, "GET", "/client.js", headers={"Origin": "https://b.example"})
    assert other[0] == 200 and "access-control-allow-origin" not in other[1]
