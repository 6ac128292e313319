"""The compiled build (``WS_COUNTER_COMPILE=1``, see setup.py): its wheel carries the listed
modules as extensions and nothing else at the top level, and the worker's tests pass on
it as they do on the pure-Python build that the rest of the suite runs."""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

import pytest

from bench.builds import check_compiled, compiled_copy, compiled_modules

from .checkout import copy_of_checkout, only_our_names, run_checked
from .deploy import ROOT

# Integration tests of what the compiled modules do: the increment path, sessions, the
# fan-out and flow control, the client library, the HTTP API, the batcher, the pipeline
# to Redis and the publish bound. The whole suite runs on the compiled build with
# `bash scripts/dev.sh test-compiled`; CI runs these, to keep its time.
WORKER_TESTS = [
    "tests/test_worker.py",
    "tests/test_sessions.py",
    "tests/test_client_library.py",
    "tests/test_http_api.py",
    "tests/test_batcher.py",
    "tests/test_pipeline.py",
    "tests/test_publish_bound.py",
]


@pytest.mark.unit
def test_the_compiled_modules_are_worker_modules_that_exist() -> None:
    modules = compiled_modules()
    assert modules, "the compiled build compiles something"
    for path in modules:
        assert path.startswith("ws_counter/worker/") and (ROOT / path).is_file(), path


def run_in(argv: list[str], cwd: Path, timeout: float) -> None:
    """Run ``argv`` in ``cwd``, the compiled build asked for and ``cwd`` first on the path."""
    run_checked(
        argv, cwd, timeout, {**os.environ, "WS_COUNTER_COMPILE": "1", "PYTHONPATH": str(cwd)}
    )


@pytest.mark.install
def test_the_worker_tests_pass_on_the_compiled_build(tmp_path: Path) -> None:
    copy = compiled_copy(tmp_path / "compiled")
    check_compiled(copy)
    pytest_argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    run_in([*pytest_argv, "-m", "unit"], copy, 300)
    run_in([*pytest_argv, *WORKER_TESTS], copy, 600)


@pytest.mark.install
def test_the_compiled_wheel_holds_every_listed_module_compiled(tmp_path: Path) -> None:
    source, dist = copy_of_checkout(tmp_path / "source"), tmp_path / "dist"
    # Without isolation: the compiler, mypyc, is this environment's mypy.
    build = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)]
    run_in([*build, str(source)], source, 600)
    with zipfile.ZipFile(only_our_names(dist)) as wheel:
        names = wheel.namelist()
    for path in compiled_modules():
        stem = path.removesuffix(".py")
        assert any(name.startswith(f"{stem}.cpython-") for name in names), path
