"""The load test's client takes every message the protocol documents without crashing, and
counts each as the run's verdict needs it (no sockets: messages are fed to it directly)."""

from __future__ import annotations

import asyncio
import json

import pytest

from ws_counter.tools.loadtest.loadclient import LoadClient
from ws_counter.tools.loadtest.tally import Tally
from ws_counter.worker.core.protocol import (
    ErrorCode,
    Increment,
    ack_message,
    applied_earlier_message,
    error_message,
    total_message,
)
from ws_counter.worker.core.state import Applied, CounterState

pytestmark = pytest.mark.unit

COUNTER = "c"


def documented_messages(first: str, second: str) -> list[str]:
    """Every kind of server message, about the increments identified by ``first``/``second``
    (as the book names them: ``session:n`` or an id)."""

    def increment(key: str) -> Increment:
        session, _, n = key.partition(":")
        return Increment(5, session=session, n=int(n)) if n else Increment(5, key)

    one, two = increment(first), increment(second)
    state = CounterState("e", 8, 40)
    errors = [
        error_message(code, "refused", **one.echo)
        for code in ErrorCode
        if code not in {ErrorCode.UNAVAILABLE, ErrorCode.RATE_LIMITED, ErrorCode.OUT_OF_ORDER}
    ]
    return [
        total_message(COUNTER, CounterState("e", 7, 35)),
        total_message(COUNTER, state, missed=True),
        total_message(COUNTER, CounterState("e", 6, 30)),  # older: a regression
        error_message(ErrorCode.RATE_LIMITED, "slow down", **two.echo),
        error_message(ErrorCode.UNAVAILABLE, "Redis is unavailable", **two.echo),
        error_message(ErrorCode.OUT_OF_ORDER, "gap", expected=2, **two.echo),
        error_message(ErrorCode.INVALID_MESSAGE, "no echo"),
        *errors,
        ack_message(two, Applied(CounterState("e", 9, 45))),
        ack_message(two, Applied(CounterState("e", 9, 45), duplicate=True)),
        applied_earlier_message(two, 64) if two.session else ack_message(two, Applied(state)),
        json.dumps({"type": "ack", "session": "x", "n": "not a number"}),
        json.dumps({"type": "total", "counter": COUNTER, "total": "5", "seq": 1, "epoch": "e"}),
        json.dumps({"type": "greeting"}),
        "[]",
        "not JSON at all",
        total_message(COUNTER, CounterState("f", 1, 45)),  # a new epoch
    ]


@pytest.mark.parametrize("dedup", ["session", "id"])
def test_the_load_test_takes_every_documented_message(dedup: str) -> None:
    async def feed() -> tuple[LoadClient, Tally]:
        tally = Tally([COUNTER])
        client = LoadClient(tally, "ws://127.0.0.1:9/", COUNTER, dedup, "p")
        client.start_increment(5)
        client.start_increment(5)
        book = client.core.book
        keys = (
            [f"{book.session}:1", f"{book.session}:2"]  # type: ignore[attr-defined]
            if dedup == "session"
            else ["p-1", "p-2"]
        )
        for text in documented_messages(*keys):
            client.receive(text)
        await client.close()
        return client, tally

    client, tally = asyncio.run(feed())
    # The first increment failed for good on the first refusal; the second was acked.
    assert client.outstanding == 0
    assert tally.acked == 1
    assert any(
        "failed: forbidden" in error or "failed: invalid_message" in error for error in tally.errors
    ), tally.errors
    assert tally.regressions == 1
    assert tally.epoch_changes == 1
    assert client.seen is not None and (client.seen.epoch, client.seen.seq) == ("f", 1)
    assert tally.error_codes["malformed_message"] == 4  # the ack of no session is not ours
    assert tally.error_codes[ErrorCode.RATE_LIMITED] == 1
    assert tally.frames == len(documented_messages("abcdefgh:1", "abcdefgh:2"))


def test_an_ack_without_a_seq_counts_as_applied_earlier() -> None:
    """A resend older than the session window is acknowledged without a seq: the run counts
    it in the total, and does not crash (it once raised KeyError: 'seq')."""

    async def feed() -> Tally:
        tally = Tally([COUNTER])
        client = LoadClient(tally, "ws://127.0.0.1:9/", COUNTER, "session", "p")
        client.start_increment(7)
        session = client.core.book.session  # type: ignore[attr-defined]
        client.receive(applied_earlier_message(Increment(7, session=session, n=1), 64))
        await client.close()
        return tally

    tally = asyncio.run(feed())
    assert tally.earlier == {COUNTER: [7]}
    assert tally.acked == 1 and tally.duplicates == 1
    assert tally.acks[COUNTER] == {}
