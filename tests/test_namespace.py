"""One installed name: the service and the tools import as ws_counter.worker and ws_counter.tools.

In the repository ``ws_counter/worker`` and ``ws_counter/tools`` are links to the
``worker/`` and ``tools/`` folders, so the checkout's root also makes ``worker``
and ``tools`` importable by their bare names. Code that did so would load a
second copy of a module (two Settings classes, two metric registries) and would
break in a wheel, which installs neither name: these tests forbid it.
"""

from __future__ import annotations

import ast
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
BARE = {"worker", "tools"}


def tracked(pattern: str) -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", pattern], cwd=ROOT, capture_output=True, check=True, text=True
    ).stdout
    return [ROOT / name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def bare_imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            if name.split(".")[0] in BARE:
                yield f"{path.relative_to(ROOT)}:{node.lineno}: import {name}"


def test_no_python_file_imports_worker_or_tools_by_the_bare_name() -> None:
    found = [hit for path in tracked("*.py") for hit in bare_imports(path)]
    assert found == []


RUN_BY_BARE_NAME = re.compile(r"""-m["',\s]+(worker|tools)\b(?![/-])""")


def test_nothing_runs_worker_or_tools_as_a_bare_module() -> None:
    """Run as a bare module, worker and tools exist only in a checkout: -m ws_counter.worker."""
    found = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in tracked("*")
        if path.suffix not in {".png", ".ico"}
        for match in RUN_BY_BARE_NAME.finditer(path.read_text(errors="replace"))
    ]
    assert found == []


def test_the_links_point_at_the_folders_the_repository_keeps() -> None:
    for name in BARE:
        link = ROOT / "ws_counter" / name
        assert link.is_symlink() and link.resolve() == ROOT / name
