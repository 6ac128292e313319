"""TLS for clients: ``ws-counter cluster --tls``, where HAProxy serves wss:// and https://.

One local cluster with a throwaway CA (Redis on TLS with the least-privilege
user behind it). Every client we ship is driven over it: the page in
Chromium, /client.js, the HTTP API, the Python library, ``ws-counter
client`` and ``ws-counter loadtest``, each with the CA, and what each says
without it.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from ws_counter.tools.cluster import ClusterOptions, LocalCluster
from ws_counter.tools.processes import free_port
from ws_counter_client import CertificateRejected, connect, tls_context

from .conftest import seconds

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    options = ClusterOptions(
        workers=2, port=free_port(), tls=True, log_dir=tmp_path_factory.mktemp("tls-cluster")
    )
    with LocalCluster(options) as cluster:
        yield cluster


def https(cluster: LocalCluster, path: str) -> str:
    return cluster.url.replace("wss://", "https://").rstrip("/") + path


def fetch(
    cluster: LocalCluster, path: str, body: dict[str, int] | None = None, accept: str = "*/*"
) -> tuple[int, str]:
    assert cluster.ca_file is not None
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    request = urllib.request.Request(
        https(cluster, path),
        data=None if body is None else json.dumps(body).encode(),
        headers={"Accept": accept, "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=seconds(10), context=context) as response:
        return response.status, response.read().decode()


def test_the_page_client_js_and_the_http_api_over_https(tls_cluster: LocalCluster) -> None:
    status, page = fetch(tls_cluster, "/counters/tls-api")
    assert status == 200 and "<title>ws-counter · tls-api</title>" in page
    status, script = fetch(tls_cluster, "/client.js")
    assert status == 200 and "export function connect" in script
    status, ack = fetch(tls_cluster, "/counters/tls-api/increments", {"by": 4})
    assert status == 200 and json.loads(ack)["total"] == 4
    status, state = fetch(tls_cluster, "/counters/tls-api", accept="application/json")
    assert json.loads(state)["total"] == 4


def test_plain_http_is_not_served_next_to_https(tls_cluster: LocalCluster) -> None:
    """The TLS port takes TLS only: a plain request gets no page."""
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(https(tls_cluster, "/").replace("https://", "http://"), timeout=5)


def test_the_library_connects_with_the_ca_and_stops_without_it(tls_cluster: LocalCluster) -> None:
    assert tls_cluster.ca_file is not None
    context = tls_context(str(tls_cluster.ca_file))

    async def scenario() -> int | None:
        async with connect(tls_cluster.url, counter="tls-lib", ssl=context) as counter:
            await counter.increment(2)
            ack = await counter.increment(3)
        return ack.total

    assert asyncio.run(scenario()) == 5

    async def untrusted() -> None:
        async with connect(tls_cluster.url, counter="tls-lib"):
            pass

    # The system's CAs do not know the throwaway one: a reason, not endless retries.
    with pytest.raises(CertificateRejected, match="TLS certificate not trusted"):
        asyncio.run(untrusted())


def run_tool(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ws_counter.tools", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=seconds(60),
        check=False,
    )


def test_the_interactive_client_takes_the_page_address_and_the_ca(
    tls_cluster: LocalCluster,
) -> None:
    """The https:// address the cluster prints for the page works as the client's URL."""
    url = https(tls_cluster, "/counters/tls-cli")
    result = run_tool("client", url, "--ca", str(tls_cluster.ca_file), stdin="6\n7\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "acknowledged: total 13 (seq 2)" in result.stdout


def test_the_load_test_over_wss_is_exact_and_says_what_a_missing_ca_means(
    tls_cluster: LocalCluster, tmp_path: Path
) -> None:
    report_path = tmp_path / "report.json"
    exact = run_tool(
        "loadtest", tls_cluster.url, "--ca", str(tls_cluster.ca_file),
        "--clients", "20", "--increments", "5", "--counter", "tls-load",
        "--loopback-only", "--json", str(report_path),
    )  # fmt: skip
    assert exact.returncode == 0, exact.stdout
    report = json.loads(report_path.read_text())
    assert report["observed_total"] == report["expected_total"] and report["correct"]
    refused = run_tool("loadtest", tls_cluster.url, "--clients", "2", "--increments", "1")
    assert refused.returncode == 2, refused.stdout
    assert "TLS certificate not trusted" in refused.stdout and "--ca" in refused.stdout


def test_the_page_works_in_chromium_over_https(tls_cluster: LocalCluster, browser: Browser) -> None:
    """Chromium, told to accept the throwaway certificate for this loopback address only."""
    context = browser.new_context(ignore_https_errors=True)
    try:
        pages = [context.new_page(), context.new_page()]
        for page in pages:
            page.goto(https(tls_cluster, "/counters/tls-page"))
            expect(page.locator("#state")).to_have_text("connected", timeout=seconds(10) * 1000)
        pages[0].get_by_label("Number to add").fill("9")
        pages[0].keyboard.press("Enter")
        expect(pages[1].locator("#total")).to_have_text("9")
        assert pages[0].evaluate("location.protocol") == "https:"
    finally:
        context.close()


def test_the_client_without_the_ca_is_told_to_give_it(tls_cluster: LocalCluster) -> None:
    result = run_tool("client", tls_cluster.url, stdin="1\n")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "TLS certificate not trusted" in result.stdout
    assert "give the CA that signed it with --ca FILE" in result.stdout


def test_a_plain_client_of_the_tls_port_is_asked_whether_it_meant_wss(
    tls_cluster: LocalCluster,
) -> None:
    """ws:// to the TLS port: the retries say what is likely wrong instead of only
    "did not receive a valid HTTP response"."""
    plain = tls_cluster.url.replace("wss://", "ws://")
    client = subprocess.Popen(
        [sys.executable, "-m", "ws_counter.tools", "client", plain],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert client.stdout is not None
        seen = []
        for _ in range(50):  # bounded: the first retry says it
            line = client.stdout.readline()
            seen.append(line)
            if "connection lost" in line or not line:
                break
        assert "(is this a TLS port? try wss://)" in "".join(seen), seen
    finally:
        client.kill()
        client.communicate(timeout=seconds(10))
