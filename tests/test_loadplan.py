"""The load test's counter comes from --counter or from the URL, never silently elsewhere."""

from __future__ import annotations

import pytest

from tools.loadtest.plan import LoadOptions, PlanError, counter_names, split, validate

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
