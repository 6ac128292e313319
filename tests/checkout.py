"""The checkout as a build sees it: its files copied elsewhere, the wheel made of them, and
commands run in such a copy."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from collections.abc import Mapping
from pathlib import Path

from .conftest import seconds
from .deploy import ROOT


def copy_of_checkout(target: Path) -> Path:
    """The files git would commit (tracked, or new and not ignored), copied to ``target``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_symlink():  # ws_counter/worker and ws_counter/tools
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).symlink_to((ROOT / name).readlink())
        elif (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


def only_our_names(dist: Path) -> Path:
    """The wheel built into ``dist``, which installs ws_counter and ws_counter_client only."""
    (wheel,) = dist.glob("ws_counter-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        top = {name.split("/")[0] for name in archive.namelist()}
    assert {name for name in top if not name.endswith(".dist-info")} == {
        "ws_counter",
        "ws_counter_client",
    }
    return wheel


def run_checked(
    argv: list[str], cwd: Path, timeout: float, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in ``cwd``; fail the test with its exit status and its output's tail."""
    result = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds(timeout),
        check=False,
    )
    assert result.returncode == 0, (
        f"{argv} exited {result.returncode}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result
