"""The counter page in a real browser (Debian's Chromium driven by Playwright).

Two pages on two workers of a real local cluster: an increment typed in one
shows up in the other; a worker restart shows "reconnecting" and then the
right total; bad input shows a readable error. Screenshots go to the test
artifacts.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from ws_counter.tools.cluster import LocalCluster

from .conftest import ARTIFACTS, http_get, seconds

pytestmark = pytest.mark.browser

CLUSTER_WORKERS = 2


def open_page(browser: Browser, url: str, width: int = 800) -> Page:
    page = browser.new_page(viewport={"width": width, "height": 900})
    outside: list[str] = []
    page.on(
        "request",
        lambda request: outside.append(request.url) if "127.0.0.1" not in request.url else None,
    )
    page.goto(url)
    expect(page.locator("#state")).to_have_text("connected", timeout=seconds(10) * 1000)
    assert outside == [], f"the page fetched from outside: {outside}"
    return page


def add(page: Page, text: str) -> None:
    page.get_by_label("Number to add").fill(text)
    page.keyboard.press("Enter")


def worker_page_url(cluster: LocalCluster, index: int, counter: str) -> str:
    return f"http://127.0.0.1:{cluster.worker_ports[index]}/counters/{counter}"


def test_plain_get_serves_the_page_through_the_balancer(cluster: LocalCluster) -> None:
    status, body = http_get(cluster.url.replace("ws://", "http://"))
    assert status == 200
    assert "<title>ws-counter · default</title>" in body
    assert "http://" not in body.replace("http://127.0.0.1", "") and "https://" not in body


def test_an_increment_in_one_page_shows_in_a_page_on_another_worker(
    cluster: LocalCluster, browser: Browser
) -> None:
    first = open_page(browser, worker_page_url(cluster, 0, "page-sync"))
    second = open_page(browser, worker_page_url(cluster, 1, "page-sync"), width=390)
    add(first, "5")
    expect(second.locator("#total")).to_have_text("5")
    expect(first.locator("#log li").first).to_contain_text("+5 → 5")
    first.get_by_label("Number to add").fill("-2")
    first.get_by_role("button", name="Add").click()
    expect(second.locator("#total")).to_have_text("3")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    first.screenshot(path=str(ARTIFACTS / "counter-page.png"))
    second.screenshot(path=str(ARTIFACTS / "counter-page-phone.png"))


def test_a_page_reconnects_after_its_worker_restarts(
    cluster: LocalCluster, browser: Browser
) -> None:
    steady = open_page(browser, worker_page_url(cluster, 0, "page-restart"))
    moving = open_page(browser, worker_page_url(cluster, 1, "page-restart"))
    add(steady, "7")
    expect(moving.locator("#total")).to_have_text("7")
    cluster.stop_worker(1)
    expect(moving.locator("#state")).to_contain_text("reconnecting")
    add(steady, "4")
    expect(steady.locator("#total")).to_have_text("11")
    cluster.start_worker(1)
    expect(moving.locator("#state")).to_have_text("connected", timeout=seconds(30) * 1000)
    expect(moving.locator("#total")).to_have_text("11")
    expect(moving.locator("#meta")).to_contain_text("caught up")


def test_a_number_typed_while_reconnecting_stays_in_view_until_applied(
    cluster: LocalCluster, browser: Browser
) -> None:
    """Typed while the page's worker is down: shown as pending ("not connected yet: 6 is sent
    once connected"), then sent on the reconnect and logged with its ack."""
    page = open_page(browser, worker_page_url(cluster, 1, "page-pending"))
    cluster.stop_worker(1)
    expect(page.locator("#state")).to_contain_text("reconnecting")
    add(page, "6")
    pending = page.locator("#log li.pending")
    expect(pending).to_have_text("+6 · not connected yet: 6 is sent once connected")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "counter-page-pending.png"))
    cluster.start_worker(1)
    expect(page.locator("#state")).to_have_text("connected", timeout=seconds(30) * 1000)
    expect(page.locator("#total")).to_have_text("6")
    expect(pending).to_have_count(0)
    expect(page.locator("#log li.mine").first).to_contain_text("+6 → 6")
    page.close()


def test_bad_input_shows_a_readable_error(cluster: LocalCluster, browser: Browser) -> None:
    page = open_page(browser, worker_page_url(cluster, 0, "page-errors"))
    add(page, "abc")
    expect(page.locator("#error")).to_have_text("Enter a whole number, like 5 or -3.")
    # Digits beyond 64 bits: the client module refuses them before anything is sent.
    add(page, "99999999999999999999")
    expect(page.locator("#error")).to_have_text("Enter a number within the signed 64-bit range.")
    expect(page.locator("#total")).to_have_text("0")
    add(page, "9223372036854775807")
    expect(page.locator("#total")).to_have_text("9,223,372,036,854,775,807")
    add(page, "1")
    expect(page.locator("#error")).to_contain_text("(overflow)")
    page.screenshot(path=str(ARTIFACTS / "counter-page-error.png"))


def test_recent_updates_show_everyones_marked_yours_or_others(
    cluster: LocalCluster, browser: Browser
) -> None:
    """The list holds the page's own increments and everyone else's, conflated where
    several arrive in one total, each marked."""
    mine = open_page(browser, worker_page_url(cluster, 0, "page-log"))
    other = open_page(browser, worker_page_url(cluster, 1, "page-log"))
    add(other, "3")
    expect(mine.locator("#total")).to_have_text("3")
    add(mine, "5")
    expect(mine.locator("#total")).to_have_text("8")
    add(other, "-2")
    expect(mine.locator("#total")).to_have_text("6")
    lines = mine.locator("#log li")
    expect(lines).to_have_count(3)
    expect(lines.nth(0)).to_have_text("-2 → 6 (seq 3) · others")
    expect(lines.nth(1)).to_have_text("+5 → 8 (seq 2) · you")
    expect(lines.nth(2)).to_have_text("+3 → 3 (seq 1) · others")
    expect(other.locator("#log li").nth(1)).to_have_text("+5 → 8 (seq 2) · others")


def test_a_long_total_wraps_between_digit_groups_at_phone_width(
    cluster: LocalCluster, browser: Browser
) -> None:
    page = open_page(browser, worker_page_url(cluster, 0, "page-wrap"), width=320)
    add(page, "-9223372036854775808")
    expect(page.locator("#total")).to_have_text("-9,223,372,036,854,775,808")
    # Wrapped over lines, and no digit group split across two of them.
    groups = page.eval_on_selector_all(
        "#total span", "spans => spans.map(s => [s.textContent, s.getClientRects().length])"
    )
    assert [text for text, _ in groups] == ["-9,", "223,", "372,", "036,", "854,", "775,", "808"]
    assert all(rects == 1 for _, rects in groups)
    tops = page.eval_on_selector_all(
        "#total span", "spans => new Set(spans.map(s => s.getBoundingClientRect().top)).size"
    )
    assert tops > 1, "the total did not wrap at 320 px"
