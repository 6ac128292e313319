"""The one build step pyproject.toml cannot declare: the compiled build.

``WS_COUNTER_COMPILE=1`` builds the modules that pyproject.toml lists under
``[tool.ws_counter] compiled`` with mypyc, as C extensions beside their
Python source (which Python then no longer imports). Without it the build is
pure Python and needs no compiler: that build is the fallback, and the one
every machine can make. ``scripts/dev.sh compile`` builds the extensions in
place; ``scripts/dev.sh pure`` removes them.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from setuptools import setup


def compiled_modules() -> list[str]:
    """The paths pyproject.toml lists for mypyc, relative to this folder."""
    document = tomllib.loads(Path(__file__).with_name("pyproject.toml").read_text())
    paths: list[str] = document["tool"]["ws_counter"]["compiled"]
    return paths


def extensions() -> list[Any]:
    if os.environ.get("WS_COUNTER_COMPILE") != "1":
        return []
    # Imported only for the compiled build: the pure one needs no mypy.
    from mypyc.build import mypycify  # noqa: PLC0415

    return list(mypycify(compiled_modules(), opt_level="3", group_name="ws_counter.worker"))


setup(ext_modules=extensions())
