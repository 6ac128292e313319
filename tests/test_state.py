"""The channel codec: Lua writes a counter's state, Python reads it, on the same examples."""

from __future__ import annotations

import time

import pytest

from ws_counter.worker.core.protocol import INT64_MAX, INT64_MIN
from ws_counter.worker.core.state import CounterState, decode_state
from ws_counter.worker.store.scripts import prelude, script, script_names

from .conftest import RedisServer

# (epoch, seq, total) and the exact payload both languages agree on.
EXAMPLES = [
    (CounterState("abc", 0, 0), "abc 0 0"),
    (CounterState("e", 10**15, INT64_MIN), f"e {10**15} {INT64_MIN}"),
    (CounterState("0a1b2c3d4e5f", 1, INT64_MAX), f"0a1b2c3d4e5f 1 {INT64_MAX}"),
]


@pytest.mark.parametrize(("state", "payload"), EXAMPLES)
def test_python_reads_each_example(state: CounterState, payload: str) -> None:
    """decode_state turns each payload into its state, with 64-bit totals exact."""
    assert decode_state(payload) == state
    assert decode_state(payload.encode()) == state


@pytest.mark.parametrize(("state", "payload"), EXAMPLES)
def test_lua_writes_each_example(
    redis_server: RedisServer, state: CounterState, payload: str
) -> None:
    """The scripts' encode_state writes each state as exactly that payload."""
    lua = prelude() + "return encode_state(ARGV[1], tonumber(ARGV[2]), ARGV[3])"
    written = redis_server.cli("EVAL", lua, "0", state.epoch, str(state.seq), str(state.total))
    assert written == payload


def test_an_update_carries_the_publish_time(redis_server: RedisServer) -> None:
    """encode_update appends Redis' clock in ms, which decode_state keeps apart from the state."""
    lua = prelude() + "return encode_update(encode_state('e', 7, '-12'))"
    before = int(time.time() * 1000)
    state = decode_state(redis_server.cli("EVAL", lua, "0"))
    after = int(time.time() * 1000)
    assert state == CounterState("e", 7, -12)
    assert state.published_ms is not None
    assert before - 1000 <= state.published_ms <= after + 1000


@pytest.mark.parametrize("payload", ["", "e 1", "e x 3", "e 1 2 3 4", "e 1 2.5"])
def test_malformed_payloads_are_refused(payload: str) -> None:
    """A payload of the wrong shape raises ValueError instead of yielding a wrong state."""
    with pytest.raises(ValueError):
        decode_state(payload)


@pytest.mark.unit
def test_every_script_a_worker_may_run_is_named_and_builds() -> None:
    """The soak bounds Redis' script cache by these; each is the prelude and its own file."""
    assert script_names() == ["announce", "fleet", "flush", "increment", "rebase"]
    for name in script_names():
        assert script(name).source.count(prelude()) == 1, name
