"""The JavaScript client module (/client.js) in Debian's Chromium against a real local cluster.

Each browser page loads the module from the worker that serves it and drives
it with ``page.evaluate``: two pages on two workers, a reconnect after a
worker is killed with increments in flight, and the resends of increments the
rate limit refused.
"""

from __future__ import annotations

import re
import signal

import pytest
from playwright.sync_api import Browser, Page

from ws_counter.tools.cluster import LocalCluster
from ws_counter_client.rules import Freshness

from .conftest import counter_state, http_get, seconds
from .core_scripts import SCRIPT_POLICY, SCRIPTS
from .test_client_rules import COUNTER_URLS, COUNTERS_OF_URLS, REFUSALS, outcome, session_with

pytestmark = pytest.mark.browser

CLUSTER_WORKERS = 2


def module_page(browser: Browser, cluster: LocalCluster, worker: int) -> Page:
    """A page whose origin is ``worker``, with the module imported as ``window.wsc``."""
    page = browser.new_page()
    page.set_default_timeout(seconds(30) * 1000)
    page.goto(f"http://127.0.0.1:{cluster.worker_ports[worker]}/client.js")
    page.evaluate("async () => { window.wsc = await import('/client.js'); }")
    return page


def open_client(page: Page, url: str, counter: str, backoff: tuple[int, int] = (100, 1000)) -> None:
    """``window.client``: a client of ``counter`` at ``url``, statuses in ``window.statuses``."""
    page.evaluate(
        """async ([url, counter, backoff]) => {
            window.statuses = [];
            window.client = wsc.connect(url, {
                counter, backoff, onStatus: (status) => statuses.push(status.state),
            });
            await client.ready;
        }""",
        [url, counter, list(backoff)],
    )


def test_two_pages_see_each_others_increments_exactly(
    cluster: LocalCluster, browser: Browser, counter_name: str
) -> None:
    """An increment beyond 2**53 made in one page arrives exact in a page on another worker."""
    first = module_page(browser, cluster, 0)
    second = module_page(browser, cluster, 1)
    open_client(first, cluster.worker_url(0), counter_name)
    open_client(second, cluster.worker_url(1), counter_name)
    ack = first.evaluate(
        """async () => {
            const ack = await client.increment(9007199254740993n);
            return { total: ack.total.toString(), seq: ack.seq.toString(), dup: ack.duplicate };
        }"""
    )
    assert ack == {"total": "9007199254740993", "seq": "1", "dup": False}
    seen = second.evaluate(
        """async () => {
            for await (const total of client.totals()) {
                if (total.seq === 1n) return [total.total.toString(), total.counter];
            }
        }"""
    )
    assert seen == ["9007199254740993", counter_name]
    assert counter_state(cluster, counter_name)["total"] == 9007199254740993
    for page in (first, second):
        page.close()


def test_a_page_of_another_origin_imports_the_module_and_counts(
    cluster: LocalCluster, browser: Browser, counter_name: str
) -> None:
    """A page of one origin imports /client.js from another (module scripts are fetched in
    CORS mode, so this needs Access-Control-Allow-Origin) and increments through it."""
    page = browser.new_page()
    page.set_default_timeout(seconds(30) * 1000)
    page.goto(f"http://127.0.0.1:{cluster.worker_ports[0]}/healthz")
    other = f"http://127.0.0.1:{cluster.worker_ports[1]}"
    total = page.evaluate(
        """async ([other, counter]) => {
            const wsc = await import(other + '/client.js');
            const client = wsc.connect(other, { counter });
            await client.ready;
            const ack = await client.increment(5);
            client.close();
            return ack.total.toString();
        }""",
        [other, counter_name],
    )
    assert total == "5"
    page.close()


def test_increments_in_flight_when_the_worker_dies_are_resent_after_the_reconnect(
    cluster: LocalCluster, browser: Browser, counter_name: str
) -> None:
    """Worker 2 is frozen, three increments go out, it is killed and started again:
    the module reconnects, resends them and each is applied once."""
    page = module_page(browser, cluster, 0)
    open_client(page, cluster.worker_url(1), counter_name)
    worker = cluster.workers[1]
    worker.send_signal(signal.SIGSTOP)
    try:
        page.evaluate(
            "() => { window.acks = Promise.all([1n, 2n, 3n].map((by) => client.increment(by))); }"
        )
        assert page.evaluate("() => client.inFlight") == 3
    finally:
        cluster.stop_worker(1, signal.SIGKILL)
    cluster.start_worker(1)
    acks = page.evaluate(
        "async () => (await acks).map((ack) => [ack.n, ack.seq.toString(), ack.duplicate])"
    )
    assert sorted(acks) == [[1, "1", False], [2, "2", False], [3, "3", False]]
    assert "reconnecting" in page.evaluate("() => statuses")
    assert (
        counter_state(cluster, counter_name)["total"],
        counter_state(cluster, counter_name)["seq"],
    ) == (6, 3)
    page.close()


def test_increments_refused_by_the_rate_limit_are_resent_until_applied(
    cluster: LocalCluster, browser: Browser, counter_name: str
) -> None:
    """300 increments at once on one connection of a worker with the default rate limit
    (100/s, burst 200): some are refused as rate_limited; the module sends them again,
    in order, and every one is applied exactly once."""
    refused_before = _rate_limited(cluster, 0)
    page = module_page(browser, cluster, 0)
    open_client(page, cluster.worker_url(0), counter_name)
    result = page.evaluate(
        """async () => {
            const acks = await Promise.all(
                Array.from({ length: 300 }, () => client.increment(1n)));
            return [acks.length, new Set(acks.map((ack) => ack.seq)).size,
                    acks.filter((ack) => ack.duplicate).length];
        }"""
    )
    assert result == [300, 300, 0]
    assert counter_state(cluster, counter_name)["total"] == 300
    assert _rate_limited(cluster, 0) > refused_before
    page.close()


def _rate_limited(cluster: LocalCluster, worker: int) -> float:
    _, body = http_get(f"http://127.0.0.1:{cluster.worker_ports[worker]}/metrics")
    match = re.search(r'ws_counter_increments_total\{outcome="rate_limited"\} (\S+)', body)
    return float(match.group(1)) if match else 0.0


# A refusal of three outstanding increments, decided by the module's Session,
# in the form test_client_rules.outcome gives the Python one's.
JS_OUTCOME = """(cases) => cases.map(([n, code, expected]) => {
    const session = new wsc.Session("abcdefgh");
    for (const by of [1, 2, 3]) session.add(by, "ticket-" + by);
    const got = session.refused({ session: session.id, n, expected }, code);
    const kind = got.fail ? ["fail", got.fail.ticket]
        : got.resend !== undefined ? ["resend", got.resend, got.attempt] : ["Forgotten"];
    return [...kind, [...session.outstanding.keys()], session.nextN];
})"""

# Replays tests/core_scripts.py on the module's ClientCore and describes its
# actions as tests/test_client_core.py describes the Python core's.
JS_REPLAY = """async ([rows, policy]) => {
  const describe = (a) => {
    switch (a.type) {
      case "send": return ["send", a.frames];
      case "resolve": return ["resolve", a.ticket, a.ack.seq === null ? null : String(a.ack.seq),
        a.ack.total === null ? null : String(a.ack.total), a.ack.duplicate];
      case "reject":
        return ["reject", a.ticket, a.error.name, a.error.code ?? a.error.status ?? null];
      case "show":
        return ["show", String(a.total.total), String(a.total.seq), a.total.epoch,
          a.total.missed];
      case "regress": return ["regress", String(a.total.seq)];
      case "note": return ["note", a.code];
      case "arm": return ["arm", a.timer, a.delay];
      case "reconnect": return ["reconnect", a.delay];
      case "stop": return ["stop", a.error === null ? null : a.error.name];
    }
    throw new Error("unknown action " + a.type);
  };
  const eventOf = ([kind, ...args]) => ({
    connect: () => ({ type: "connected" }),
    receive: () => ({ type: "received", text: args[0] }),
    lose: () => ({ type: "lost", detail: "lost", status: args[0], reason: args[1] }),
    fire: () => ({ type: "timerFired", timer: args[0] }),
    ask: () => ({ type: "incrementAsked", by: args[0], ticket: args[1] }),
    close: () => ({ type: "closeAsked" }),
  })[kind]();
  return rows.map(([, book, events]) => {
    const core = new wsc.ClientCore(
      "c",
      book === "session" ? new wsc.Session("abcdefgh") : new wsc.Ids("p"),
      { backoff: policy.backoff, maxInFlight: policy.max_in_flight,
        maxResends: policy.max_resends, maxReconnects: policy.max_reconnects },
      (low, high) => high,
    );
    return events.flatMap((step) => core.handle(eventOf(step)).map(describe));
  });
}"""


def test_the_module_follows_the_same_rules_as_the_python_library(
    cluster: LocalCluster, browser: Browser
) -> None:
    """Every script of the client core's table (each event, each protocol answer), every
    refusal of the book's table, freshness and the counters' URLs, decided by both."""
    page = module_page(browser, cluster, 0)
    rows = [list(row) for row in SCRIPTS]
    assert page.evaluate(JS_REPLAY, [rows, SCRIPT_POLICY]) == [row[3] for row in SCRIPTS]
    python = [outcome(session_with(3), n, code, expected) for n, code, expected, *_ in REFUSALS]
    cases = [[n, code, expected] for n, code, expected, *_ in REFUSALS]
    assert page.evaluate(JS_OUTCOME, cases) == python
    freshness = [("e1", 1), ("e1", 2), ("e1", 2), ("e1", 1), ("e2", 1), ("e1", 9)]
    news = page.evaluate(
        "(states) => { const f = new wsc.Freshness();"
        " return states.map(([epoch, seq]) => f.takeIfNews(epoch, BigInt(seq))); }",
        freshness,
    )
    python_freshness = Freshness()
    assert news == [python_freshness.take_if_news(epoch, seq) for epoch, seq in freshness]
    # The module's URLs take a token only (no other query parameter).
    urls = [
        (url, counter, query.get("token"), expected)
        for url, counter, query, expected in COUNTER_URLS
        if set(query) <= {"token"}
    ]
    assert len(urls) >= 8
    assert page.evaluate(
        "(cases) => cases.map(([url, counter, token]) => wsc.counterUrl(url, counter, token))",
        urls,
    ) == [expected for *_, expected in urls]
    assert page.evaluate(
        "(urls) => urls.map((url) => wsc.counterOfUrl(url))",
        [url for url, _ in COUNTERS_OF_URLS],
    ) == [counter for _, counter in COUNTERS_OF_URLS]
    page.close()
