"""The load test's counter comes from --counter or from the URL, never silently elsewhere."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from ws_counter.tools.loadtest.plan import (
    LoadOptions,
    PlanError,
    counter_names,
    shard_clients,
    split,
    validate,
)
from ws_counter.tools.loadtest.tally import AgentResult, decode_result, encode_result
from ws_counter.worker.core.state import CounterState as S

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("url", "counter", "counters", "names"),
    [
        ("ws://127.0.0.1:8080/", None, 1, ["default"]),
        ("ws://127.0.0.1:8080/counters/votes", None, 1, ["votes"]),
        ("ws://127.0.0.1:8080/counters/votes/", None, 1, ["votes"]),
        ("ws://127.0.0.1:8080/counters/votes", "votes", 1, ["votes"]),
        ("ws://127.0.0.1:8080/", "votes", 1, ["votes"]),
        ("ws://127.0.0.1:8080/counters/votes", None, 2, ["votes-0", "votes-1"]),
        ("ws://h/prefix/counters/votes?token=x", None, 1, ["votes"]),
    ],
)
def test_the_counter_is_the_flags_or_the_urls(
    url: str, counter: str | None, counters: int, names: list[str]
) -> None:
    options = LoadOptions(url=url, counter=counter, counters=counters, clients=4, increments=1)
    validate(options)
    assert counter_names(options) == names
    # The report's parameters name the counter the run used.
    assert options.as_dict()["counter"] == (names[0] if counters == 1 else "votes")
    assert {name for share in split(options) for _, name in share.clients} == set(names)


@pytest.mark.parametrize(
    ("url", "counter", "message"),
    [
        ("ws://h/counters/votes", "polls", "the URL names counter 'votes' but --counter says"),
        ("ws://h/counters/Bad%20Name", None, "invalid counter name"),
        ("ws://h/counters/", None, "invalid counter name ''"),
        ("ws://h/", "No Way", "invalid counter name"),
    ],
)
def test_a_conflict_or_an_invalid_name_is_refused(
    url: str, counter: str | None, message: str
) -> None:
    with pytest.raises(PlanError, match=message):
        validate(LoadOptions(url=url, counter=counter, increments=1))


@pytest.mark.parametrize(("clients", "counters", "count"), [(60, 6, 3), (7, 5, 2), (100, 20, 4)])
def test_shards_split_clients_and_counters_without_overlap(
    clients: int, counters: int, count: int
) -> None:
    """Every client in exactly one shard, and every counter's clients in the same shard."""
    whole = LoadOptions(url="ws://h/", clients=clients, counters=counters, increments=1)
    seen: dict[int, str] = {}
    owner: dict[str, int] = {}
    for index in range(count):
        shard = replace(whole, shard=(index, count))
        validate(shard)
        for number, counter in shard_clients(shard):
            assert number not in seen
            seen[number] = counter
            assert owner.setdefault(counter, index) == index, counter
    assert seen == dict(shard_clients(whole))


@pytest.mark.parametrize(
    ("shard", "counters", "message"),
    [((0, 4), 3, "--counters 4 or more"), ((2, 2), 4, "I must be from 0 to N-1")],
)
def test_a_shard_without_counters_of_its_own_is_refused(
    shard: tuple[int, int], counters: int, message: str
) -> None:
    with pytest.raises(PlanError, match=message):
        validate(LoadOptions(url="ws://h/", counters=counters, increments=1, shard=shard))


def test_a_result_survives_its_json_form() -> None:
    """What a shard writes for merge decodes to the very result it encoded."""
    result = AgentResult(
        index=0, connect_us=b"HISTFAAAA", ack_us=b"HISTFBBBB", failed_connects={"timeout": 1},
        close_codes={1000: 3, 1012: 1}, error_codes={"unavailable": 2}, errors=["e"],
        acks={"c": {1: (5, 1.5), 2: (-3, 1.75)}}, earlier={"c": [4]},
        reached={"c": {1: 2.0, 2: 2.5}}, initial_states=[("c", S("ep", 0, 0))],
        final=[("c", S("ep", 2, 2)), ("d", S("ep", 1, 1))], verified={"c": S("ep", 2, 2)},
        regressions=0, epoch_changes=1, duplicates=0, reconnects=2, connected_at=[1.0],
        reconnected_at=[3.0], frames=9, sent=3, acked=2, connected=3, first_send=1.25,
        last_ack=2.5, cpu_busy=0.4,
    )  # fmt: skip
    assert decode_result(json.loads(json.dumps(encode_result(result)))) == result
