"""A counter's state, and the one form it takes on a counter's Redis channel.

The channel message is ``EPOCH SEQ TOTAL [MS]``: the cheapest form for every
worker to parse on every update. Lua writes it in exactly one place
(``encode_state`` in ``worker/store/lua/state.lua``, prepended to each script)
and Python reads it here; tests/test_state.py holds both to the same examples.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import StoreRejected


def rebuilt_from_fields(value: Any) -> tuple[type, tuple[object, ...]]:
    """``__reduce__`` for a frozen dataclass: rebuilt by calling the class with its fields.

    Pickle's default sets each field on a bare instance, which mypyc's compiled
    classes do through the frozen class's ``__setattr__``, which refuses; the load
    test's processes send states to each other by pickle (tests/test_values.py).
    """
    return type(value), tuple(getattr(value, f.name) for f in fields(value))


@dataclass(frozen=True, slots=True)
class CounterState:
    """A counter's state as applied in Redis: ``seq`` counts increments in ``epoch``.

    ``published_ms`` is when Redis published it (its clock, ms since the epoch),
    if it came from the channel; it is not part of the state's identity.
    """

    epoch: str
    seq: int
    total: int
    published_ms: int | None = field(default=None, compare=False)

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return rebuilt_from_fields(self)


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of one increment: the state right after it was applied.

    ``duplicate`` is true when the increment had already been applied, in which
    case the state is the one of the original application.
    """

    state: CounterState
    duplicate: bool = False

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return rebuilt_from_fields(self)


@dataclass(frozen=True, slots=True)
class AppliedEarlier:
    """A session's retry of an increment applied so long ago that its outcome is gone.

    It was applied exactly once; only its total can no longer be told.
    """


APPLIED_EARLIER = AppliedEarlier()

# What Redis answers for one increment.
Outcome = Applied | AppliedEarlier | StoreRejected


def decode_state(payload: bytes | str) -> CounterState:
    """Parse ``EPOCH SEQ TOTAL [MS]``; raises ValueError if malformed."""
    text = payload.decode() if isinstance(payload, bytes) else payload
    parts = text.split(" ")
    if len(parts) == 4:
        epoch, seq, total, published = parts
        return CounterState(epoch, int(seq), int(total), int(published))
    epoch, seq, total = parts
    return CounterState(epoch=epoch, seq=int(seq), total=int(total))
