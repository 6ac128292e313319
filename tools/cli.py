"""The ``ws-counter`` command line: serve, cluster, demo, client, healthcheck, loadtest and
make-secrets."""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TypeAlias

from ws_counter.worker import runtime
from ws_counter.worker.main import add_serve_parser, serve_command

from .arguments import at_least, port_number
from .client import run_client
from .cluster import MAX_WORKERS_BEHIND_HAPROXY
from .demo import run_cluster_command
from .loadtest.cli import add_loadtest_parser, run_loadtest_command, run_merge_command
from .makesecrets import add_make_secrets_parser, make_secrets_command

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _add_cluster(subparsers: Subparsers) -> None:
    for name, description in (
        ("cluster", "run Redis, N workers and HAProxy on loopback until Ctrl-C"),
        (
            "demo",
            "bring up the local cluster, run a load test through it, keep it up for the"
            " counter page until Ctrl-C",
        ),
    ):
        parser = subparsers.add_parser(name, help=description, description=description)
        parser.add_argument(
            "--workers",
            type=at_least(1),
            default=3,
            help=f"number of workers (default 3; at most {MAX_WORKERS_BEHIND_HAPROXY} behind"
            " HAProxy)",
        )
        parser.add_argument(
            "--port", type=port_number, default=8080, help="load balancer port (default 8080)"
        )
        parser.add_argument("--host", default="127.0.0.1", help="load balancer address")
        parser.add_argument(
            "--no-haproxy",
            action="store_true",
            help="no load balancer: workers share the port with SO_REUSEPORT",
        )
        parser.add_argument(
            "--redis-cluster",
            type=redis_cluster_size,
            default=0,
            metavar="N",
            help="run a Redis Cluster of N primaries (N >= 3), each with a replica, instead of"
            " one Redis; workers use sharded pub/sub",
        )
        parser.add_argument(
            "--tls",
            action="store_true",
            help="TLS from clients and to Redis: HAProxy serves wss:// and https:// with a"
            " throwaway CA's certificate (and reaches the workers over plain HTTP on"
            " loopback), Redis takes only TLS and the workers log in as the least-privilege"
            " ACL user",
        )
        parser.add_argument(
            "--monitor",
            action="store_true",
            help="also run Prometheus (Debian package prometheus) scraping every worker, with"
            " ws-counter's alert rules loaded; its URL is printed",
        )
        parser.add_argument("--log-dir", type=Path, help="keep each process's output here")
        parser.add_argument("--verbose", action="store_true", help="echo every process's output")
        if name == "demo":
            parser.add_argument(
                "--clients", type=at_least(1), default=300, help="load-test clients"
            )
            parser.add_argument(
                "--increments", type=at_least(1), default=20, help="increments per load-test client"
            )
            parser.add_argument(
                "--exit",
                action="store_true",
                help="tear the cluster down after the load test instead of waiting for Ctrl-C"
                " (for scripts; the exit status is the load test's)",
            )


def redis_cluster_size(text: str) -> int:
    value = at_least(0)(text)
    if value in (1, 2):
        raise argparse.ArgumentTypeError(
            "a Redis Cluster needs at least 3 primaries (0: one Redis)"
        )
    return value


def _add_client(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "client",
        help="interactive client: type numbers, see the shared total",
        description="Prompts 'Number: ', sends each number as the next increment of its own"
        " session, prints its ack and every total pushed by others. Reconnects with jittered"
        " backoff and resends what was not acknowledged, in order and unchanged, so nothing is"
        " lost or doubled. Ctrl-D or Ctrl-C quits.",
    )
    parser.add_argument(
        "url",
        nargs="?",
        default="ws://127.0.0.1:8080/",
        help="counter URL, e.g. ws://127.0.0.1:8080/counters/votes (default ws://127.0.0.1:8080/;"
        " wss://, and the page's http(s):// address, work too)",
    )
    parser.add_argument(
        "--ca",
        dest="ca_file",
        metavar="FILE",
        help="trust the CA certificates (PEM) in FILE for a wss:// URL",
    )


def _add_healthcheck(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "healthcheck",
        help="exit 0 when the local worker answers /healthz (for container health checks)",
        description="GET http://127.0.0.1:$WS_PORT/healthz (or /readyz with --ready) and exit 0"
        " on 200, 1 otherwise. Container images need no curl for it.",
    )
    parser.add_argument("--ready", action="store_true", help="check /readyz instead")
    parser.add_argument("--port", type=int, help="worker port (default: $WS_PORT or 8000)")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds (default 2)")


def _healthcheck(args: argparse.Namespace) -> int:
    port = args.port or int(os.environ.get("WS_PORT") or 8000)
    url = f"http://127.0.0.1:{port}/{'readyz' if args.ready else 'healthz'}"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            ok = response.status == 200
    except (OSError, urllib.error.URLError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


def _client(args: argparse.Namespace) -> int:
    try:
        return runtime.run(run_client(args.url, args.ca_file))
    except KeyboardInterrupt:
        print()
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ws-counter",
        description="Horizontally scaled WebSocket counter: stateless workers, "
        "one exact total per counter in Redis, fan-out over Redis pub/sub.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_serve_parser(subparsers)
    _add_cluster(subparsers)
    _add_client(subparsers)
    _add_healthcheck(subparsers)
    add_loadtest_parser(subparsers)
    add_make_secrets_parser(subparsers)
    return parser


COMMANDS = {
    "serve": serve_command,
    "cluster": run_cluster_command,
    "demo": run_cluster_command,
    "client": _client,
    "healthcheck": _healthcheck,
    "loadtest": run_loadtest_command,
    "make-secrets": make_secrets_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:2] == ["loadtest", "merge"]:
        return run_merge_command(words[2:])
    args = build_parser().parse_args(words)
    return COMMANDS[args.command](args)
