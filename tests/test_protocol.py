"""Table tests of the pure protocol module: no sockets, no sleeps."""

from __future__ import annotations

import json

import pytest

from ws_counter.worker.core.protocol import (
    INT64_MAX,
    INT64_MIN,
    CounterRoute,
    Increment,
    ack_message,
    error_message,
    missed_updates,
    parse_client_message,
    parse_counter_route,
    total_message,
)
from ws_counter.worker.core.state import Applied, CounterState
from ws_counter.worker.errors import ClientError, RouteError

pytestmark = pytest.mark.unit

VALID_MESSAGES = [
    ("5", Increment(5)),
    ("-3", Increment(-3)),
    ("+7", Increment(7)),
    ("  42\n", Increment(42)),
    ("0", Increment(0)),
    (str(INT64_MAX), Increment(INT64_MAX)),
    (str(INT64_MIN), Increment(INT64_MIN)),
    ("0000000000000000000000012", Increment(12)),
    ('{"op": "incr", "by": 2}', Increment(2)),
    ('{"op": "incr", "by": -2, "id": "a"}', Increment(-2, "a")),
    ('{"op": "incr", "by": 1, "id": "' + "x" * 64 + '"}', Increment(1, "x" * 64)),
    (json.dumps({"op": "incr", "by": INT64_MAX}), Increment(INT64_MAX)),
    (
        '{"op": "incr", "by": 5, "session": "Ab_-0123", "n": 1}',
        Increment(5, session="Ab_-0123", n=1),
    ),
    (
        json.dumps({"op": "incr", "by": 1, "session": "s" * 64, "n": 2**53}),
        Increment(1, session="s" * 64, n=2**53),
    ),
    ('{"by": 3, "op": "incr", "extra": true}', Increment(3)),
]


@pytest.mark.parametrize(("text", "expected"), VALID_MESSAGES)
def test_valid_messages_parse_to_increments(text: str, expected: Increment) -> None:
    """Bare integers and incr objects within int64 become increments with their id."""
    assert parse_client_message(text) == expected


INVALID_MESSAGES = [
    ("", "invalid_message"),
    ("abc", "invalid_message"),
    ("5 5", "invalid_message"),
    ("1e3", "invalid_message"),
    ("[1, 2]", "invalid_message"),
    ('"5"', "invalid_message"),
    ("null", "invalid_message"),
    ("{", "invalid_message"),
    ('{"op": "decr", "by": 1}', "unknown_op"),
    ('{"by": 1}', "unknown_op"),
    ('{"op": "incr"}', "missing_by"),
    ('{"op": "incr", "by": 1.5}', "invalid_by"),
    ('{"op": "incr", "by": 1.0}', "invalid_by"),
    ('{"op": "incr", "by": "5"}', "invalid_by"),
    ('{"op": "incr", "by": true}', "invalid_by"),
    ('{"op": "incr", "by": null}', "invalid_by"),
    ('{"op": "incr", "by": NaN}', "invalid_by"),
    ('{"op": "incr", "by": Infinity}', "invalid_by"),
    (str(INT64_MAX + 1), "out_of_range"),
    (str(INT64_MIN - 1), "out_of_range"),
    ("9" * 30, "out_of_range"),
    ("9" * 5000, "out_of_range"),
    (json.dumps({"op": "incr", "by": INT64_MAX + 1}), "out_of_range"),
    # Beyond 64 bits a fast JSON parser reads a float; it is still an integer out of range.
    (json.dumps({"op": "incr", "by": 2**64}), "out_of_range"),
    (json.dumps({"op": "incr", "by": 10**20, "session": "abcdefgh", "n": 1}), "out_of_range"),
    (json.dumps({"op": "incr", "by": 1, "session": "abcdefgh", "n": 10**20}), "invalid_n"),
    (json.dumps({"op": "incr", "by": 1, "session": "short", "n": 1}), "invalid_session"),
    (json.dumps({"op": "incr", "by": 1, "session": "abcdefgh"}), "invalid_n"),
    (json.dumps({"op": "incr", "by": 1, "n": 3}), "invalid_session"),
    (json.dumps({"op": "incr", "by": 1, "session": "abcdefgh", "n": 0}), "invalid_n"),
    (
        json.dumps({"op": "incr", "by": 1, "session": "abcdefgh", "n": 1, "id": "x"}),
        "invalid_message",
    ),
    ('{"op": "incr", "by": 1, "id": ""}', "invalid_id"),
    ('{"op": "incr", "by": 1, "id": 7}', "invalid_id"),
    ('{"op": "incr", "by": 1, "id": "' + "x" * 65 + '"}', "invalid_id"),
    (b"5", "binary_not_supported"),
    (b"\x00\xff", "binary_not_supported"),
]


@pytest.mark.parametrize(("message", "code"), INVALID_MESSAGES)
def test_invalid_messages_raise_client_errors_with_codes(message: str | bytes, code: str) -> None:
    """Every malformed frame maps to one documented snake_case error code."""
    with pytest.raises(ClientError) as caught:
        parse_client_message(message)
    assert caught.value.code == code
    assert caught.value.message


def test_client_error_keeps_the_id_when_it_was_valid() -> None:
    """An error about `by` carries the increment's id so the client can match it."""
    with pytest.raises(ClientError) as caught:
        parse_client_message('{"op": "incr", "by": "x", "id": "abc"}')
    assert caught.value.increment_id == "abc"


ROUTES = [
    ("/", CounterRoute("default")),
    ("/counters/default", CounterRoute("default")),
    ("/counters/votes", CounterRoute("votes")),
    ("/counters/a_b-9", CounterRoute("a_b-9")),
    ("/counters/" + "z" * 64, CounterRoute("z" * 64)),
    ("/?since=41", CounterRoute("default", since=41)),
    ("/counters/x?since=0&token=abc", CounterRoute("x", since=0, token="abc")),
]


@pytest.mark.parametrize(("target", "route"), ROUTES)
def test_counter_routes(target: str, route: CounterRoute) -> None:
    """`/` and `/counters/<name>` name counters; since and token come from the query."""
    assert parse_counter_route(target) == route


BAD_ROUTES = [
    ("/counters/", 400),
    ("/counters/UPPER", 400),
    ("/counters/" + "z" * 65, 400),
    ("/counters/a/b", 400),
    ("/counters/a.b", 400),
    ("/counters/%61", 400),
    ("/?since=x", 400),
    ("/?since=1&since=2", 400),
    ("/other", 404),
    ("/counters", 404),
    ("//", 404),
]


@pytest.mark.parametrize(("target", "status"), BAD_ROUTES)
def test_bad_routes_are_refused_with_400_or_404(target: str, status: int) -> None:
    """Unknown paths are 404 and invalid counter names 400, before any upgrade."""
    with pytest.raises(RouteError) as caught:
        parse_counter_route(target)
    assert caught.value.status == status


def test_server_messages_have_the_documented_shapes() -> None:
    """total, ack and error messages carry exactly the documented fields."""
    state = CounterState("e1", 7, INT64_MAX)
    assert json.loads(total_message("c", state)) == {
        "type": "total",
        "counter": "c",
        "total": INT64_MAX,
        "seq": 7,
        "epoch": "e1",
    }
    assert json.loads(total_message("c", state, missed=True))["missed"] is True
    assert json.loads(ack_message(Increment(1, "i"), Applied(state))) == {
        "type": "ack",
        "id": "i",
        "total": INT64_MAX,
        "seq": 7,
        "epoch": "e1",
    }
    assert json.loads(ack_message(Increment(1), Applied(state, duplicate=True)))["duplicate"]
    assert json.loads(error_message("overflow", "too big", "i")) == {
        "type": "error",
        "code": "overflow",
        "message": "too big",
        "id": "i",
    }


@pytest.mark.parametrize(
    ("since", "seq", "missed"), [(None, 5, None), (5, 5, False), (3, 5, True), (9, 5, True)]
)
def test_missed_updates(since: int | None, seq: int, missed: bool | None) -> None:
    """A resuming client is told whether its last seq is the current one."""
    assert missed_updates(since, CounterState("e", seq, 0)) is missed


def test_session_ack_and_error_carry_the_session_and_number() -> None:
    """A session's ack names its session and n (no id); its errors do too."""
    increment = Increment(3, session="abcdefgh", n=4)
    state = CounterState("e", 9, 12)
    assert json.loads(ack_message(increment, Applied(state))) == {
        "type": "ack",
        "session": "abcdefgh",
        "n": 4,
        "total": 12,
        "seq": 9,
        "epoch": "e",
    }
    error = json.loads(error_message("out_of_order", "later", **increment.echo, expected=2))
    assert (error["session"], error["n"], error["expected"]) == ("abcdefgh", 4, 2)
    assert "id" not in error
