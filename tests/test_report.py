"""The load test's verdicts: pure functions over what the clients saw."""

from __future__ import annotations

import pytest

from ws_counter.tools.loadtest.report import fanout_latencies, judge_counter
from ws_counter.worker.core.state import CounterState

pytestmark = pytest.mark.unit

S = CounterState

START = S("e", 10, 100)


def judge(
    acks: dict[int, int],
    verified: CounterState | None,
    finals: list[CounterState] | None = None,
    initial: list[CounterState] | None = None,
) -> list[str]:
    verdict = judge_counter(
        "c",
        initial or [START, START],
        acks,
        verified,
        finals if finals is not None else [verified] if verified else [],
    )
    return verdict.errors


def test_exact_totals_pass() -> None:
    assert judge({11: 5, 12: -2}, S("e", 12, 103)) == []


def test_a_new_epoch_with_exact_totals_is_noted_not_failed() -> None:
    verdict = judge_counter("c", [START], {11: 5}, S("f", 11, 105), [S("f", 11, 105)])
    assert verdict.errors == []
    assert "epoch changed" in verdict.notes[0]


@pytest.mark.parametrize(
    ("acks", "verified", "finals", "message"),
    [
        ({11: 5}, S("e", 11, 104), None, "off by -1"),
        ({11: 5}, S("f", 1, 5), None, "history was lost"),
        ({11: 5, 13: 1}, S("e", 13, 106), None, "not gap-free"),
        ({11: 5}, S("e", 12, 105), None, "final seq 12"),
        ({11: 5}, None, [], "could not be read"),
        ({11: 5}, S("e", 11, 105), [S("e", 11, 105), S("e", 10, 100)], "did not end"),
    ],
)
def test_each_kind_of_wrong_result_is_reported(
    acks: dict[int, int],
    verified: CounterState | None,
    finals: list[CounterState] | None,
    message: str,
) -> None:
    errors = judge(acks, verified, finals)
    assert any(message in error for error in errors), errors


def test_clients_starting_from_different_states_are_reported() -> None:
    errors = judge({}, S("e", 10, 100), initial=[START, S("e", 11, 101)])
    assert any("different states" in error for error in errors)


def test_fanout_latency_is_ack_to_the_last_client() -> None:
    acks = {1: 10.0, 2: 11.0, 3: 12.0}
    reached = [{1: 10.5, 2: 11.2}, {1: 10.1, 2: 11.4, 3: 12.3}]
    latencies, unreached = fanout_latencies(acks, reached)
    assert [round(x, 3) for x in latencies] == [0.5, 0.4]
    assert unreached == 1


def test_acks_without_a_seq_count_in_the_total_and_leave_that_many_seqs_unaccounted() -> None:
    """An increment acknowledged as applied earlier (no seq) adds to the expected total, and
    exactly one seq after the start is then not in the acks."""
    verdict = judge_counter(
        "c", [START], {11: 5, 13: 1}, S("e", 13, 108), [S("e", 13, 108)], earlier=[2]
    )
    assert verdict.errors == []
    assert verdict.expected_total == 108 and verdict.acked == 3
    wrong = judge_counter(
        "c", [START], {11: 5, 14: 1}, S("e", 13, 108), [S("e", 13, 108)], earlier=[2]
    )
    assert any("not gap-free" in error for error in wrong.errors)
