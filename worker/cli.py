"""The ``ws-counter`` command line: serve, cluster, demo, client and loadtest."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from .settings import SETTINGS, Settings, SettingsError, load_settings, parse_secret


def run_async(main: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop where it is installed, on plain asyncio elsewhere."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def _shown(default: object) -> str:
    """A default as the environment variable would spell it."""
    if isinstance(default, tuple):
        parts = (":".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in default)
        return ",".join(parts) or "none"
    return str(default) if default != "" else "none"


def _add_serve(subparsers: Any) -> None:
    defaults = Settings()
    parser = subparsers.add_parser(
        "serve",
        help="run one worker",
        description="Run one stateless worker. Every setting can also come from the "
        "environment variable named in its help; a flag wins over the environment.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for setting in SETTINGS:
        shown = _shown(getattr(defaults, setting.field))
        parser.add_argument(
            setting.flag,
            dest=setting.field,
            metavar=setting.metavar,
            default=None,
            help=f"{setting.help} [env {setting.env}; default {shown!s}]",
        )


def _add_cluster(subparsers: Any) -> None:
    for name, description in (
        ("cluster", "run Redis, N workers and HAProxy on loopback until Ctrl-C"),
        ("demo", "bring up the local cluster, run a load test through it, tear it down"),
    ):
        parser = subparsers.add_parser(name, help=description, description=description)
        parser.add_argument("--workers", type=int, default=3, help="number of workers (default 3)")
        parser.add_argument(
            "--port", type=int, default=8080, help="load balancer port (default 8080)"
        )
        parser.add_argument("--host", default="127.0.0.1", help="load balancer address")
        parser.add_argument(
            "--no-haproxy",
            action="store_true",
            help="no load balancer: workers share the port with SO_REUSEPORT",
        )
        parser.add_argument("--log-dir", type=Path, help="keep each process's output here")
        parser.add_argument("--verbose", action="store_true", help="echo every process's output")
        if name == "demo":
            parser.add_argument("--clients", type=int, default=300, help="load-test clients")
            parser.add_argument(
                "--increments", type=int, default=20, help="increments per load-test client"
            )


def _add_client(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "client",
        help="interactive client: type numbers, see the shared total",
        description="Prompts 'Number: ', sends each number with an id, prints its ack and every"
        " total pushed by others. Reconnects with jittered backoff and resends what was not"
        " acknowledged, under the same id, so nothing is lost or doubled. Ctrl-D or Ctrl-C quits.",
    )
    parser.add_argument(
        "url",
        nargs="?",
        default="ws://127.0.0.1:8080/",
        help="counter URL, e.g. ws://127.0.0.1:8080/counters/votes (default ws://127.0.0.1:8080/)",
    )


def _add_healthcheck(subparsers: Any) -> None:
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
    import urllib.error
    import urllib.request

    port = args.port or int(os.environ.get("WS_PORT") or 8000)
    url = f"http://127.0.0.1:{port}/{'readyz' if args.ready else 'healthz'}"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            ok = response.status == 200
    except (OSError, urllib.error.URLError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ws-counter",
        description="Horizontally scaled WebSocket counter: stateless workers, "
        "one exact total per counter in Redis, fan-out over Redis pub/sub.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_serve(subparsers)
    _add_cluster(subparsers)
    _add_client(subparsers)
    _add_healthcheck(subparsers)
    from .loadtest.cli import add_loadtest_parser

    add_loadtest_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command in ("cluster", "demo"):
        from .demo import run_cluster_command

        return run_cluster_command(args)
    if args.command == "healthcheck":
        return _healthcheck(args)
    if args.command == "client":
        from .client import run_client

        try:
            return run_async(run_client(args.url))
        except KeyboardInterrupt:
            print()
            return 130
    from .loadtest.cli import run_loadtest_command

    return run_loadtest_command(args)


def _serve(args: argparse.Namespace) -> int:
    from . import logs
    from .server import serve_until_signalled

    flags = {setting.field: getattr(args, setting.field) for setting in SETTINGS}
    try:
        settings = load_settings(os.environ, flags)
        settings = _with_secret_file(settings)
    except SettingsError as exc:
        print(f"ws-counter serve: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format, settings.log_level)
    return run_async(serve_until_signalled(settings))


def _with_secret_file(settings: Settings) -> Settings:
    """Read the token secret from WS_JWT_SECRET_FILE when one is named."""
    if not settings.jwt_secret_file:
        return settings
    source = f"WS_JWT_SECRET_FILE: {settings.jwt_secret_file}"
    try:
        secret = parse_secret(Path(settings.jwt_secret_file).read_text().strip())
    except OSError as exc:
        raise SettingsError(f"{source}: {exc.strerror}") from None
    except ValueError as exc:
        # An empty file would mean no tokens at all: refuse it like a short secret.
        raise SettingsError(f"{source}: the secret {exc}") from None
    if not secret:
        raise SettingsError(f"{source}: the file is empty")
    return dataclasses.replace(settings, jwt_secret=secret)


def wait_for_interrupt(announce: Callable[[], None] = lambda: None) -> None:
    """Block until SIGINT or SIGTERM arrives.

    ``announce`` runs once the handlers are in place, so that whoever reads
    its message and sends the signal cannot be too early.
    """
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        announce()
        stop.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
