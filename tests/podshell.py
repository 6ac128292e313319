"""Running a manifest's or compose file's shell command as its pod or container would.

The command runs as written, with ``sh``. Two things are mapped: ``/secrets`` to a
directory of ``ws-counter make-secrets`` files here, and Redis' addresses, which the
``redis-cli`` of ``tests/redis_cli_shim.py`` (first on PATH) turns into loopback
ports: the pod's own Redis (localhost:6379 there) and its peers by DNS name.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ws_counter.tools.redisserver import require_binary

from .conftest import seconds
from .deploy import ROOT
from .secured import made_secrets


class PodShell:
    def __init__(self, directory: Path) -> None:
        self.secrets = made_secrets(directory)
        self._bin = directory / "bin"
        self._bin.mkdir()
        shim = self._bin / "redis-cli"
        shim.write_text(
            f'#!/bin/sh\nexec {sys.executable} {ROOT / "tests" / "redis_cli_shim.py"} "$@"\n'
        )
        shim.chmod(0o755)
        # getent hosts NAME, answered from the run's ``addresses`` (the pod's DNS).
        getent = self._bin / "getent"
        getent.write_text(
            '#!/bin/sh\n[ "$1" = hosts ] || exit 2\n'
            'awk -v n="$2" \'$2 == n {print $1 "  " $2; found = 1} END {exit !found}\' '
            '"$POD_HOSTS"\n'
        )
        getent.chmod(0o755)
        self._hosts = directory / "pod-hosts"
        self._hosts.write_text("")

    def run(
        self,
        argv: Sequence[str],
        port: int | None = None,
        hosts: Mapping[str, int] | None = None,
        timeout: float = 10,
        env: Mapping[str, str] | None = None,
        paths: Mapping[str, Path] | None = None,
        addresses: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` with ``/secrets`` (and ``paths``: mount -> directory here) mapped, on
        the node at ``port``, peers at ``hosts``, with the pod's own variables ``env``
        (those the manifest sets)."""
        self._hosts.write_text("".join(f"{ip} {name}\n" for name, ip in (addresses or {}).items()))
        mounts = {"/secrets/": self.secrets, **(paths or {})}
        command = list(argv)
        for mount, directory in mounts.items():
            command = [part.replace(mount, f"{directory}/") for part in command]
        path = f"{self._bin}:{Path(sys.executable).parent}:{os.environ['PATH']}"
        env = {
            **os.environ,
            "PATH": path,
            "REAL_REDIS_CLI": require_binary("redis-cli", "redis-server"),
            "PROBE_PORT": "" if port is None else str(port),
            "REDIS_HOSTS": ",".join(f"{name}={p}" for name, p in (hosts or {}).items()),
            "POD_HOSTS": str(self._hosts),
            **(env or {}),
        }
        return subprocess.run(command, env=env, capture_output=True, text=True,
                              timeout=seconds(timeout), check=False)  # fmt: skip
