"""``ws-counter serve``: run one worker until SIGTERM or SIGINT, then drain."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from . import logs, runtime
from .errors import SettingsError
from .limits import raise_open_file_limit
from .server import Worker
from .settings import (
    Settings,
    add_arguments,
    check_auth,
    flags_of,
    insecure_redis,
    load_settings,
)

log = logging.getLogger("ws_counter.worker")

DESCRIPTION = (
    "Run one stateless worker. Every setting can also come from the "
    "environment variable named in its help; a flag wins over the environment."
)


def add_serve_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("serve", help="run one worker", description=DESCRIPTION)
    add_arguments(parser)


def serve_command(args: argparse.Namespace) -> int:
    """Settings from the environment and ``args``, logs, then the worker until signalled."""
    try:
        settings = load_settings(os.environ, flags_of(args))
        check_auth(settings)
    except SettingsError as exc:
        print(f"ws-counter serve: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format, settings.log_level)
    runtime.tune_collector()
    return runtime.run(serve(settings))


async def serve(settings: Settings) -> int:
    """Run one worker until SIGTERM or SIGINT, then drain and return the exit status."""
    warning = raise_open_file_limit(settings.max_connections)
    if warning is not None:
        log.warning(warning, extra={"event": "open_file_limit"})
    insecure = insecure_redis(settings)
    if insecure is not None:
        log.warning(insecure, extra={"event": "redis_insecure"})
    worker = Worker(settings)
    stop = runtime.stop_requested()
    await worker.start()
    await stop
    await worker.drain()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ws_counter.worker [serve] [flags]``: the worker alone, without the tools."""
    parser = argparse.ArgumentParser(prog="python -m ws_counter.worker", description=DESCRIPTION)
    add_arguments(parser)
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["serve"]:
        arguments = arguments[1:]
    return serve_command(parser.parse_args(arguments))
