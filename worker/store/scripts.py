"""The Lua steps, read from the package and run by SHA with a fallback to their text.

Each script is ``lua/state.lua`` (the channel codec) followed by its own
file (after its shebang line, if it has one), so every script writes a
counter's state the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

_LUA = resources.files(__package__).joinpath("lua")


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str


@cache
def script(name: str) -> Script:
    body = _LUA.joinpath(f"{name}.lua").read_text()
    # A shebang (``#!lua``, which declares flags) must stay the first line.
    shebang, body = body.split("\n", 1) if body.startswith("#!") else ("", body)
    source = (shebang + "\n" if shebang else "") + prelude() + body
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


def script_names() -> list[str]:
    """Every script a worker may run: each file in ``lua/`` but the shared prelude. However
    long a worker runs, Redis caches at most these from it on each node."""
    files = (entry.name for entry in _LUA.iterdir())
    return sorted(name.removesuffix(".lua") for name in files if name.endswith(".lua")
                  and name != "state.lua")  # fmt: skip


def prelude() -> str:
    """The shared part alone, for the test that holds it to the Python codec."""
    return _LUA.joinpath("state.lua").read_text()
