"""The fault suite's checker (faults.checker) on hand-made histories."""

from __future__ import annotations

import pytest

from faults.checker import check
from faults.deployments import hosts_of
from faults.history import History, Op, Outcome, Seen, Window
from faults.scenarios import NEMESES, RANDOM_NEMESES, SCENARIOS
from ws_counter.worker.core.state import CounterState

pytestmark = pytest.mark.unit

START = CounterState("e", 10, 100)


def op(by: int, outcome: Outcome, at: float, seq: int | None = None, epoch: str = "e") -> Op:
    state = None if seq is None else CounterState(epoch, seq, 0)
    answered = at + 0.1 if outcome is not Outcome.UNKNOWN else None
    return Op(0, by, at, outcome, answered, state)


def history(ops: list[Op], final: CounterState | None, seen: list[Seen] | None = None) -> History:
    run = History(START, final, ops, seen or [], began=0.0, ended=10.0)
    if seen is None and final is not None:
        run.seen = [Seen(0, 9.0, final)]
    return run


# (case, ops, final total, expected errors (substrings), lost, doubled)
BOUNDS: list[tuple[str, list[Op], int, list[str], int, int]] = [
    ("exact", [op(5, Outcome.ACKED, 1, 11), op(3, Outcome.ACKED, 2, 12)], 108, [], 0, 0),
    (
        "refused counts nothing",
        [op(5, Outcome.ACKED, 1, 11), op(3, Outcome.REFUSED, 2)],
        105,
        [],
        0,
        0,
    ),
    ("unknown applied", [op(5, Outcome.ACKED, 1, 11), op(3, Outcome.UNKNOWN, 2)], 108, [], 0, 0),
    (
        "unknown not applied",
        [op(5, Outcome.ACKED, 1, 11), op(3, Outcome.UNKNOWN, 2)],
        105,
        [],
        0,
        0,
    ),
    ("a negative unknown widens downwards", [op(-4, Outcome.UNKNOWN, 1)], 96, [], 0, 0),
    ("lost", [op(5, Outcome.ACKED, 1, 11), op(3, Outcome.ACKED, 2, 12)], 105, ["lost"], 3, 0),
    ("doubled", [op(5, Outcome.ACKED, 1, 11)], 110, ["applied twice"], 0, 5),
    ("a refused one applied", [op(5, Outcome.REFUSED, 1)], 105, ["applied twice"], 0, 5),
]


@pytest.mark.parametrize(
    ("name", "ops", "final", "errors", "lost", "doubled"), BOUNDS, ids=[row[0] for row in BOUNDS]
)
def test_the_final_total_lies_within_the_bounds(
    name: str, ops: list[Op], final: int, errors: list[str], lost: int, doubled: int
) -> None:
    verdict = check(history(ops, CounterState("e", 10 + len(ops), final)))
    assert [e for e in verdict.errors if not any(s in e for s in errors)] == []
    assert all(any(s in e for e in verdict.errors) for s in errors)
    assert (verdict.lost, verdict.doubled) == (lost, doubled)


def test_a_seq_acknowledged_twice_within_an_epoch_is_an_error_but_not_across_epochs() -> None:
    twice = [op(1, Outcome.ACKED, 1, 11), op(1, Outcome.ACKED, 2, 11)]
    assert any(
        "acknowledged twice" in e for e in check(history(twice, CounterState("e", 12, 102))).errors
    )
    across = [op(1, Outcome.ACKED, 1, 11), op(1, Outcome.ACKED, 2, 11, epoch="f")]
    assert check(history(across, CounterState("f", 11, 102))).errors == []


def test_a_client_whose_total_goes_back_within_an_epoch_is_reported() -> None:
    final = CounterState("e", 12, 102)
    seen = [
        Seen(0, 1, CounterState("e", 12, 102)),
        Seen(0, 2, CounterState("e", 11, 101)),
        Seen(0, 3, final),
    ]
    errors = check(
        history([op(1, Outcome.ACKED, 0, 11), op(1, Outcome.ACKED, 0, 12)], final, seen)
    ).errors
    assert errors == ["client 0 saw seq 11 after 12 in epoch e"]
    # A new epoch may start lower: not a regression.
    seen = [
        Seen(0, 1, CounterState("e", 12, 102)),
        Seen(0, 2, CounterState("f", 3, 102)),
        Seen(0, 3, final),
    ]
    run = history([op(1, Outcome.ACKED, 0, 11), op(1, Outcome.ACKED, 0, 12)], final, seen)
    assert check(run).errors == []


def test_clients_that_did_not_converge_and_an_unreadable_end_are_reported() -> None:
    final = CounterState("e", 11, 101)
    seen = [Seen(0, 1, final), Seen(1, 1, CounterState("e", 10, 100))]
    assert check(history([op(1, Outcome.ACKED, 0, 11)], final, seen)).errors == [
        "1 clients did not end at the final state"
    ]
    assert check(history([], None)).errors == ["the final state could not be read"]


def test_the_longest_stretch_without_an_ack_and_the_convergence_after_the_heal() -> None:
    ops = [op(1, Outcome.ACKED, t, 10 + i) for i, t in enumerate([0.0, 1.0, 7.0, 7.5], 1)]
    final = CounterState("e", 14, 104)
    run = history(ops, final, [Seen(0, 8.0, final), Seen(1, 9.5, final)])
    run.windows = [Window("partition", 2.0, 6.0)]
    verdict = check(run)
    assert verdict.longest_without_ack == pytest.approx(6.0)
    # The first ack after the heal at 6 s was answered at 7.1 s.
    assert verdict.acks_after_heal == pytest.approx(1.1)
    # From the last ack (7.6 s, after the heal at 6 s) until the last client held it (9.5 s).
    assert verdict.converged_after_heal == pytest.approx(1.9)
    # An increment still unanswered at the end: the stretch runs to the end of the run.
    run.ops.append(op(1, Outcome.UNKNOWN, 8.0))
    run.ended = 20.0
    assert check(run).longest_without_ack == pytest.approx(20.0 - 7.6)


@pytest.mark.parametrize(
    ("answered", "after"),
    [([0.5, 2.5, 4.0], 0.0), ([0.5, 7.0], 3.0), ([0.5, 2.0], None)],
    ids=["acks through the fault", "acks 3 s after the heal", "none after the heal"],
)
def test_the_first_ack_after_the_heal(answered: list[float], after: float | None) -> None:
    ops = [op(1, Outcome.ACKED, at - 0.1, 10 + n) for n, at in enumerate(answered, 1)]
    run = history(ops, None)
    run.windows = [Window("partition", 1.0, 4.0)]
    assert check(run).acks_after_heal == (None if after is None else pytest.approx(after))


def test_the_shipped_scenarios_run_what_the_manifests_ship() -> None:
    """faults/shipped.py reads the components: Sentinel with three replicas and two acks,
    down-after 2 s; the cluster with two replicas a primary, one ack, node timeout 5 s."""
    shipped = {s.name: s for s in SCENARIOS if s.name.startswith("shipped-")}
    sentinel = shipped["shipped-sentinel-partition-primary"]
    assert (sentinel.deployment, sentinel.replicas, sentinel.acks) == ("sentinel", 3, 2)
    assert sentinel.timing.down_after_ms == 2000
    cluster = shipped["shipped-cluster-restart-replica"]
    assert (cluster.deployment, cluster.replicas, cluster.acks) == ("cluster", 2, 1)
    assert cluster.timing.node_timeout_ms == 5000
    assert "--cluster-node-timeout" in cluster.timing.cluster_options()


def test_every_scenario_names_a_nemesis_and_a_deployment_that_exist() -> None:
    """A typo in the table would only show when that scenario's run crashes."""
    for scenario in SCENARIOS:
        assert scenario.nemesis == "random" or scenario.nemesis in NEMESES, scenario.name
        assert hosts_of(scenario.deployment, scenario.replicas), scenario.name
    assert set(RANDOM_NEMESES) <= set(NEMESES)
