"""`ws-counter loadtest` run in the background, so that a test can inject a fault mid-run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from .conftest import seconds


class BackgroundLoadtest:
    def __init__(self, url: str, *args: str, json_path: Path) -> None:
        self.json_path = json_path
        self.lines: list[str] = []
        self._acking = threading.Event()
        argv = [sys.executable, "-m", "ws_counter.tools", "loadtest", url, *args]
        self.process = subprocess.Popen(
            [*argv, "--loopback-only", "--json", str(json_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            # Progress lines read "... acked N ...": the load is flowing.
            if re.search(r"acked [1-9]", line):
                self._acking.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_until_acking(self, timeout: float = 60) -> None:
        assert self._acking.wait(seconds(timeout)), self.output

    def finish(self, timeout: float = 180) -> tuple[int, dict[str, Any] | None]:
        """Wait for the exit; return the exit status and the JSON report, if written."""
        try:
            status = self.process.wait(seconds(timeout))
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._reader.join(seconds(10))
        report = json.loads(self.json_path.read_text()) if self.json_path.exists() else None
        return status, report
