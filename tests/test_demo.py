"""``ws-counter demo``, the README's first command: a load test, then the page stays live."""

from __future__ import annotations

import os
import signal
import sys

from ws_counter.tools.processes import Child, free_port

from .conftest import http_get, seconds


def test_the_demo_keeps_the_cluster_and_page_up_until_ctrl_c() -> None:
    port = free_port()
    demo = Child(
        "demo",
        [
            sys.executable,
            "-m",
            "ws_counter.tools",
            "demo",
            "--workers",
            "2",
            "--port",
            str(port),
            "--clients",
            "40",
            "--increments",
            "5",
        ],
        env={**os.environ, "COLUMNS": "200"},
    )
    demo.start()
    try:
        line = demo.wait_for_line(lambda text: "Counter page:" in text, seconds(120))
        output = "\n".join(demo.output())
        assert "CORRECT" in output, output
        assert "HAProxy (leastconn" in output, output
        page_url = line.split("Counter page:")[1].strip()
        assert page_url == f"http://127.0.0.1:{port}/counters/default"
        status, page = http_get(page_url)
        assert status == 200 and "ws-counter · default" in page
        status, module = http_get(f"http://127.0.0.1:{port}/client.js")
        assert status == 200 and "export function connect" in module
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(seconds(60))
    assert code == 0, "\n".join(demo.output())
