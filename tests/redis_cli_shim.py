"""redis-cli as a pod or container sees it, on loopback: ``tests/podshell.py`` puts this
first on PATH. In a pod Redis is on localhost:6379 and its peers go by DNS names; here
each is a port. ``$PROBE_PORT`` is the local node's port; ``$REDIS_HOSTS`` maps names
(``name=port,...``) to ports, for ``-h NAME`` and ``NAME:6379`` arguments alike."""

from __future__ import annotations

import os
import sys


def mapped(args: list[str], hosts: dict[str, str], local: str) -> list[str]:
    out = ["-p", local] if local else []
    skip = False
    for index, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg == "-h" and index + 1 < len(args) and args[index + 1] in hosts:
            out += ["-h", "127.0.0.1", "-p", hosts[args[index + 1]]]
            skip = True
            continue
        name, _, port = arg.rpartition(":")
        out.append(f"127.0.0.1:{hosts[name]}" if name in hosts and port.isdigit() else arg)
    return out


def main() -> None:
    pairs = [p.split("=", 1) for p in os.environ.get("REDIS_HOSTS", "").split(",") if p]
    hosts = {name: port for name, port in pairs}
    real = os.environ["REAL_REDIS_CLI"]
    argv = mapped(sys.argv[1:], hosts, os.environ.get("PROBE_PORT", ""))
    os.execv(real, [real, *argv])


if __name__ == "__main__":
    main()
