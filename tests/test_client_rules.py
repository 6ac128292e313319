"""The client rules (ws_counter_client.rules) as tables: numbering, refusals, resends, freshness;
and the URLs the library and the load test connect to."""

from __future__ import annotations

import json

import pytest

from ws_counter_client.rules import (
    Fail,
    Forgotten,
    Freshness,
    Ids,
    Resend,
    ResendFrom,
    Session,
    check_by,
)
from ws_counter_client.urls import counter_of_url, counter_url

pytestmark = pytest.mark.unit


def session_with(count: int) -> Session[str]:
    session: Session[str] = Session(session="abcdefgh")
    for index in range(count):
        session.add(index + 1, f"ticket-{index + 1}")
    return session


def test_increments_are_numbered_in_order_with_their_frames() -> None:
    session = session_with(3)
    assert list(session.outstanding) == [1, 2, 3]
    assert [json.loads(f) for f in session.frames(2)] == [
        {"op": "incr", "by": 2, "session": "abcdefgh", "n": 2},
        {"op": "incr", "by": 3, "session": "abcdefgh", "n": 3},
    ]


def answer(n: object, session: str = "abcdefgh", **more: object) -> dict[str, object]:
    return {"session": session, "n": n, **more}


def test_an_ack_settles_only_its_own_session_and_number() -> None:
    session = session_with(2)
    assert session.settle(answer(1, "someone-else")) is None
    assert session.settle(answer("1")) is None
    settled = session.settle(answer(1))
    assert settled is not None and settled.ticket == "ticket-1"
    assert list(session.outstanding) == [2]


def test_ids_settle_and_refuse_by_id() -> None:
    """The lean id book keeps the session's interface: settle by id, resend alone, fail alone."""
    ids: Ids[str] = Ids(prefix="p")
    for by in (1, 2, 3):
        ids.add(by, f"ticket-{by}")
    assert ids.settle({"id": "p-9"}) is None
    decision = ids.refused({"id": "p-2"}, "rate_limited")
    assert isinstance(decision, Resend) and (decision.start, decision.attempt) == (2, 1)
    assert ids.frames(decision.start) == [
        '{"op":"incr","by":2,"id":"p-2"}',
        '{"op":"incr","by":3,"id":"p-3"}',
    ]
    failed = ids.refused({"id": "p-3"}, "forbidden")
    assert isinstance(failed, Fail) and failed.item.ticket == "ticket-3"
    settled = ids.settle({"id": "p-1"})
    assert settled is not None and settled.ticket == "ticket-1"
    assert list(ids.outstanding) == [2]


# (n refused of 1..3 outstanding, code, expected, decision, outstanding after, next n after)
REFUSALS: list[tuple[int, str, int | None, object, list[int], int]] = [
    # Nothing applied (or nothing known): send again from that number.
    (2, "unavailable", None, ("resend", 2, 1), [1, 2, 3], 4),
    (3, "rate_limited", None, ("resend", 3, 1), [1, 2, 3], 4),
    # A gap: send again from the number the worker expects.
    (3, "out_of_order", 2, ("resend", 2, 1), [1, 2, 3], 4),
    # The expected number was settled already: from the first outstanding after it.
    (3, "out_of_order", 3, ("resend", 3, 1), [1, 2, 3], 4),
    # Refused for good before Redis: gone; the last number is used again.
    (3, "forbidden", None, "fail", [1, 2], 3),
    (2, "forbidden", None, "fail", [1, 3], 4),
    # Redis ran it and refused it: the number is used up.
    (3, "overflow", None, "fail", [1, 2], 4),
]


def outcome(session: Session[str], n: int, code: str, expected: int | None) -> list[object]:
    """A refusal's decision in a form the JavaScript module's can be compared with."""
    got = session.refused(answer(n, session.session, expected=expected), code)
    kind = (
        ["fail", got.item.ticket]
        if isinstance(got, Fail)
        else ["resend", got.start, got.attempt]
        if isinstance(got, Resend)
        else [type(got).__name__]
    )
    return [*kind, list(session.outstanding), session.next_n]


@pytest.mark.parametrize("case", REFUSALS)
def test_what_a_refusal_leads_to(
    case: tuple[int, str, int | None, object, list[int], int],
) -> None:
    n, code, expected, decision, left, next_n = case
    session = session_with(3)
    got = session.refused(answer(n, expected=expected), code)
    if decision == "fail":
        assert isinstance(got, Fail) and got.item.ticket == f"ticket-{n}"
    else:
        assert isinstance(got, Resend) and ("resend", got.start, got.attempt) == decision
    assert list(session.outstanding) == left
    assert session.next_n == next_n


def test_a_refusal_of_someone_elses_increment_is_ignored() -> None:
    session = session_with(1)
    assert session.refused(answer(1, "other-session"), "unavailable") is None
    assert session.refused(answer(9), "unavailable") is None


def test_a_forgotten_session_ends_what_is_outstanding_and_starts_anew() -> None:
    """The worker expects a number below every outstanding one (the session expired):
    whether they were applied before cannot be told, so none is sent again."""
    session = session_with(5)
    session.settle(answer(1))
    session.settle(answer(2))
    decision = session.refused(answer(3, expected=1), "out_of_order")
    assert isinstance(decision, Forgotten)
    assert [item.ticket for item in decision.items] == ["ticket-3", "ticket-4", "ticket-5"]
    assert session.outstanding == {} and session.next_n == 1
    assert session.session != "abcdefgh"
    item = session.add(7, "ticket-6")
    assert json.loads(item.frame) == {"op": "incr", "by": 7, "session": session.session, "n": 1}
    assert item.position == 1


def test_a_burst_of_refusals_is_answered_by_one_resend_from_the_lowest() -> None:
    resend = ResendFrom()
    assert [resend.ask(5), resend.ask(3), resend.ask(7)] == [True, False, False]
    assert resend.take() == 3
    assert resend.start is None
    assert resend.ask(9) is True and resend.take() == 9


@pytest.mark.parametrize("by", [2**63, -(2**63) - 1, True, 1.0, "5"])
def test_by_outside_the_protocol_is_refused_before_numbering(by: object) -> None:
    session = session_with(0)
    with pytest.raises(ValueError, match=r"^by must be (an integer|within the signed 64-bit)"):
        session.add(by, "ticket")  # type: ignore[arg-type]
    assert session.next_n == 1
    assert check_by(2**63 - 1) == 2**63 - 1


@pytest.mark.parametrize(
    ("states", "news"),
    [
        ([("e1", 1), ("e1", 2), ("e1", 2), ("e1", 1)], [True, True, False, False]),
        # A new epoch is news even with a lower seq (a failover lost states).
        ([("e1", 5), ("e2", 3), ("e2", 4), ("e1", 6)], [True, True, True, True]),
        ([("e1", 0)], [True]),
    ],
)
def test_which_totals_are_news(states: list[tuple[str, int]], news: list[bool]) -> None:
    freshness = Freshness()
    assert [freshness.take_if_news(epoch, seq) for epoch, seq in states] == news


# (url, counter, query, the URL connected to): the library, the load test and
# (with token only) the JavaScript module build counters' URLs by this table.
COUNTER_URLS: list[tuple[str, str | None, dict[str, str | int | None], str]] = [
    ("ws://h:8080", "votes", {}, "ws://h:8080/counters/votes"),
    ("ws://h:8080/", None, {}, "ws://h:8080/"),
    # The root already names the default counter; a URL naming the counter is kept.
    ("ws://h:8080/", "default", {}, "ws://h:8080/"),
    ("ws://h/counters/votes", "votes", {}, "ws://h/counters/votes"),
    # Another counter on the same service, behind a proxy's path prefix or not.
    ("ws://h/counters/a", "b", {}, "ws://h/counters/b"),
    ("ws://h/ws/", "votes", {}, "ws://h/ws/counters/votes"),
    ("ws://h/ws/counters/a", "b", {}, "ws://h/ws/counters/b"),
    # Parameters are added to those the URL has; None leaves one out.
    ("ws://h/counters/v", None, {"since": 7}, "ws://h/counters/v?since=7"),
    ("ws://h/counters/v?token=t", None, {"since": 7}, "ws://h/counters/v?token=t&since=7"),
    ("ws://h", "v", {"token": None}, "ws://h/counters/v"),
    ("ws://h", "v", {"token": "a b&c"}, "ws://h/counters/v?token=a+b%26c"),
    # The page's address, as people copy it, names the same service.
    ("http://h:8080/", "votes", {}, "ws://h:8080/counters/votes"),
    ("https://h/counters/votes", None, {}, "wss://h/counters/votes"),
    ("HTTPS://h/", None, {}, "wss://h/"),
    ("wss://h", "v", {}, "wss://h/counters/v"),
]
COUNTERS_OF_URLS = [
    ("ws://h/counters/votes", "votes"),
    ("ws://h/ws/counters/votes/?since=3", "votes"),
    ("ws://h/", "default"),
    ("ws://h", "default"),
    ("ws://h/counters/", "default"),
]


@pytest.mark.parametrize(("url", "counter", "query", "expected"), COUNTER_URLS)
def test_counter_urls(
    url: str, counter: str | None, query: dict[str, str | int | None], expected: str
) -> None:
    assert counter_url(url, counter, **query) == expected


@pytest.mark.parametrize("url", ["ftp://h/", "h:8080", "redis://h/"])
def test_a_url_of_another_scheme_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="is not a ws://, wss://, http:// or https:// URL"):
        counter_url(url, "votes")


@pytest.mark.parametrize(("url", "counter"), COUNTERS_OF_URLS)
def test_the_counter_a_url_names(url: str, counter: str) -> None:
    assert counter_of_url(url) == counter
