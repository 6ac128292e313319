"""argparse types shared by the commands, which argparse turns into usage errors; the
checks themselves are the worker's settings' (worker.settings), so a flag and a setting
refuse the same values with the same words."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ws_counter.worker.settings import whole_at_least


def argument_type(parse: Callable[[str], int]) -> Callable[[str], int]:
    """``parse`` as an argparse type: its ValueError becomes a usage error naming the text."""

    def typed(text: str) -> int:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} {exc}") from None

    return typed


def at_least(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``least``."""
    return argument_type(whole_at_least(least))


port_number = argument_type(whole_at_least(1, 65535))
