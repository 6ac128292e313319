"""Arbitrary frames thrown at a real worker: it never crashes, answers only with
documented errors or close codes, and the total moves only by acknowledged increments."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from worker.core.protocol import INT64_MAX, INT64_MIN, ErrorCode

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
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=600)
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
