"""Arbitrary frames thrown at a real worker: it never crashes, answers only with
documented errors or close codes, and the total moves only by acknowledged increments."""

from __future__ import annotations

import asyncio
import http.client
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ws_counter.worker.core.protocol import INT64_MAX, INT64_MIN, ErrorCode

from .clients import counter_url, receive
from .conftest import StartWorker, http_get

MAX_MESSAGE_BYTES = 512
DOCUMENTED_ERRORS = {value for name, value in vars(ErrorCode).items() if name.isupper()}
# 1009: frame too big; 1007: a text frame that is not UTF-8 (refused by websockets itself).
DOCUMENTED_CLOSE_CODES = {1009, 1007}

integers = st.one_of(
    st.integers(min_value=-1000, max_value=1000),
    st.integers(min_value=INT64_MIN - 10, max_value=INT64_MAX + 10),
    st.sampled_from([INT64_MIN, INT64_MAX, 0, -1]),
)
json_values = st.recursive(
    st.none() | st.booleans() | integers | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
increments = st.fixed_dictionaries(
    {},
    optional={
        "op": st.sampled_from(["incr", "INCR", "decr", ""]) | json_values,
        "by": integers | json_values,
        "id": st.text(max_size=70) | json_values,
    },
)
text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=600)
frames = st.one_of(
    increments.map(json.dumps),
    integers.map(str),
    text,
    st.binary(max_size=600),
    st.builds(lambda n: " " * n + "7", st.integers(0, 700)),
)


def test_arbitrary_frames_never_break_the_worker_or_the_total(
    start_worker: StartWorker, counter_name: str
) -> None:
    worker = start_worker(WS_MAX_MESSAGE_BYTES=str(MAX_MESSAGE_BYTES), WS_RATE_LIMIT="0")
    url = counter_url(worker, counter_name)
    acknowledged: dict[str, int] = {"total": 0}

    async def exchange(frame: str | bytes) -> None:
        async with connect(url, max_size=None) as client:
            await receive(client)
            await client.send(frame)
            try:
                reply = await _reply(client)
            except ConnectionClosed:
                assert client.close_code in DOCUMENTED_CLOSE_CODES, client.close_code
                size = len(frame.encode() if isinstance(frame, str) else frame)
                if client.close_code == 1009:
                    assert size > MAX_MESSAGE_BYTES
                return
            if reply["type"] == "ack":
                acknowledged["total"] = reply["total"]
            else:
                assert reply["type"] == "error"
                assert reply["code"] in DOCUMENTED_ERRORS
                assert isinstance(reply["message"], str) and reply["message"]

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(frames)
    def throw(frame: str | bytes) -> None:
        asyncio.run(exchange(frame))

    throw()
    assert http_get(worker.http + "/healthz")[0] == 200

    async def final_total() -> int:
        async with connect(url) as client:
            state = await receive(client)
            return int(state["total"])

    assert asyncio.run(final_total()) == acknowledged["total"]


async def _reply(client: Any) -> dict[str, Any]:
    """The answer to the frame: the first ack or error (totals pushed meanwhile are skipped)."""
    while True:
        message = await receive(client)
        if message["type"] in ("ack", "error"):
            return message


# The statuses the HTTP API documents for an increment (docs/protocol.md).
DOCUMENTED_STATUSES = {200, 400, 409, 413, 415}
headers = st.fixed_dictionaries(
    {},
    optional={
        "Content-Type": st.sampled_from(
            ["application/json", "text/plain", "", "application/json; charset=utf-8"]
        ),
        "Idempotency-Key": st.text(
            alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=70
        ),
    },
)
bodies = st.one_of(
    increments.map(json.dumps).map(str.encode),
    # Bodies the API takes, to see totals move among the refusals.
    integers.map(lambda by: json.dumps({"by": by}).encode()),
    st.builds(
        lambda by, session, n: json.dumps({"by": by, "session": session, "n": n}).encode(),
        integers,
        st.sampled_from(["fuzz-session", "x", "fuzz-session-2"]) | json_values,
        st.integers(-2, 4) | json_values,
    ),
    text.map(str.encode),
    st.binary(max_size=700),
    st.binary(min_size=MAX_MESSAGE_BYTES - 4, max_size=MAX_MESSAGE_BYTES + 40),
)


def test_arbitrary_http_increments_never_break_the_worker_or_the_total(
    start_worker: StartWorker, counter_name: str
) -> None:
    """Arbitrary bodies and headers POSTed on one kept-alive connection: every answer
    is a documented status with a JSON body, and only 200s move the total."""
    worker = start_worker(WS_MAX_MESSAGE_BYTES=str(MAX_MESSAGE_BYTES), WS_RATE_LIMIT="0")
    path = f"/counters/{counter_name}/increments"
    acknowledged: dict[str, int] = {"total": 0, "seq": 0}
    seen: dict[int, int] = {}

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(bodies, headers)
    def throw(body: bytes, sent_headers: dict[str, str]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", worker.port, timeout=10)
        try:
            connection.request("POST", path, body=body, headers=sent_headers)
            response = connection.getresponse()
            document = json.loads(response.read())
        finally:
            connection.close()
        assert response.status in DOCUMENTED_STATUSES, (response.status, document)
        seen[response.status] = seen.get(response.status, 0) + 1
        if response.status == 200:
            assert document["type"] == "ack"
            # A duplicate's ack carries its first application's state: the newest seq counts.
            if document.get("seq", 0) > acknowledged["seq"]:
                acknowledged.update(total=document["total"], seq=document["seq"])
        else:
            assert document["type"] == "error" and document["message"]
        if response.status == 413:
            assert len(body) > MAX_MESSAGE_BYTES

    throw()
    print(f"statuses seen: {sorted(seen.items())}")
    assert seen.get(200) and seen.get(400), seen
    assert http_get(worker.http + "/healthz")[0] == 200
    connection = http.client.HTTPConnection("127.0.0.1", worker.port, timeout=10)
    connection.request("GET", f"/counters/{counter_name}", headers={"Accept": "application/json"})
    assert json.loads(connection.getresponse().read())["total"] == acknowledged["total"]
    connection.close()
