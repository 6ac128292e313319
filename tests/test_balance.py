"""When a worker closes connections so that added workers take their share."""

from __future__ import annotations

import pytest

from ws_counter.worker.core.balance import allowance, surplus, to_close

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("own", "fleet", "expected"),
    [
        (100, {"a": 100}, 0),  # alone: nowhere to go
        (100, {"a": 100, "b": 100}, 0),  # even
        (105, {"a": 105, "b": 95}, 0),  # within 10% of the mean (100)
        (120, {"a": 120, "b": 80}, 20),  # over: its surplus over the mean
        (200, {"a": 200, "b": 200, "c": 0, "d": 0}, 100),  # two workers added
        (0, {"a": 0, "b": 200}, 0),  # under the mean: keeps what it has
        (3, {"a": 3, "b": 0}, 1),  # small counts round down
    ],
)
def test_the_surplus_is_what_is_over_the_fleets_mean(
    own: int, fleet: dict[str, int], expected: int
) -> None:
    assert surplus(own, fleet) == expected


@pytest.mark.parametrize(
    ("own", "rate", "expected"),
    [(1000, 0.1, 8), (1000, 0.0, 0), (1000, 1.0, 83), (10, 0.1, 0), (20_000, 0.1, 166)],
)
def test_at_most_the_rate_a_minute_goes_in_one_period(own: int, rate: float, expected: int) -> None:
    """5 s periods: rate x own / 12 per period, rounded down."""
    assert allowance(own, rate) == expected


def test_the_smaller_of_surplus_and_allowance_closes() -> None:
    fleet = {"a": 2000, "b": 2000, "c": 0, "d": 0}
    assert to_close(2000, fleet, 0.1) == 16
    assert to_close(2000, fleet, 1.0) == 166
    assert to_close(2000, {"a": 2000}, 1.0) == 0
