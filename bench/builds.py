"""``python -m bench.builds``: the compiled build against the pure-Python build, in one run.

    python -m bench.builds -- --only "ws-counter x1" --measure throughput,fanout,counters,churn
    python -m bench.builds --rounds 3 -- --quick

It copies this checkout, compiles there the modules pyproject.toml lists under
``[tool.ws_counter] compiled`` (``WS_COUNTER_COMPILE=1``, mypyc; a C compiler
is needed), checks that a worker started with the copy first on its path
imports them compiled, then runs ``python -m bench`` with the arguments after
``--``, pure and compiled in turn, ``--rounds`` times. Only the workers
differ: a compiled run gives every worker the copy as ``PYTHONPATH`` (and
``PYTHONSAFEPATH``, so that the checkout the benchmark runs from does not come
first) through ``--worker-env``; the load generators are the same Python in
both. Every row of every run is printed side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# What the copy leaves out: the checkout's own environments, caches, results and builds
# (its .git stays: tests that list the tracked files run in the copy too).
NOT_COPIED = shutil.ignore_patterns(
    ".venv*",
    ".hypothesis",
    ".*_cache",
    "artifacts",
    "build",
    "results",
    "__pycache__",
    "*.so",
    "*.egg-info",
)
BUILDS = ("pure", "compiled")


def compiled_modules() -> list[str]:
    document = tomllib.loads((ROOT / "pyproject.toml").read_text())
    modules: list[str] = document["tool"]["ws_counter"]["compiled"]
    return modules


def compiled_copy(target: Path) -> Path:
    """This checkout copied to ``target``, its listed modules compiled in place."""
    shutil.copytree(ROOT, target, symlinks=True, ignore=NOT_COPIED)
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=target,
        env={**os.environ, "WS_COUNTER_COMPILE": "1"},
        check=True,
        capture_output=True,
    )
    return target


def worker_env(copy: Path) -> dict[str, str]:
    """What makes a worker import the compiled copy instead of the checkout."""
    return {"PYTHONPATH": str(copy), "PYTHONSAFEPATH": "1"}


def check_compiled(copy: Path) -> None:
    """A Python with the workers' variables, run from the checkout, imports every listed
    module from the copy as an extension."""
    names = [path.removesuffix(".py").replace("/", ".") for path in compiled_modules()]
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n"
    code += "    print(importlib.import_module(name).__spec__.origin)"
    origins = subprocess.run(
        [sys.executable, "-c", code, *names],
        cwd=ROOT,
        env={**os.environ, **worker_env(copy)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    wrong = [o for o in origins if not (o.startswith(str(copy)) and o.endswith(".so"))]
    if len(origins) != len(names) or wrong:
        raise SystemExit(f"the workers would not run the compiled build: {origins}")


def run_bench(build: str, copy: Path, out: Path, bench_args: list[str]) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench", "--out", str(out), *bench_args]
    if build == "compiled":
        for name, value in worker_env(copy).items():
            argv += ["--worker-env", f"{name}={value}"]
    print(f"== {build}: {' '.join(argv[1:])}", flush=True)
    # A failed measurement is in the results' failures; the comparison goes on.
    subprocess.run(argv, cwd=ROOT, check=False, stdout=subprocess.DEVNULL)
    results: dict[str, Any] = json.loads((out / "latest.json").read_text())
    return results


Rows = dict[str, str]


def _exact(row: dict[str, Any]) -> str:
    return "" if row["exact"] else " NOT EXACT"


def _throughput(r: dict[str, Any]) -> tuple[str, str]:
    return f"acked/s, {r['server']} ({r['dedup']})", f"{r['per_second']:,.0f}{_exact(r)}"


def _fanout(r: dict[str, Any]) -> tuple[str, str]:
    load = f"{r['server']}, {r['clients']:,} clients at {r['rate']:,.0f}/s"
    figures = f"{r['p99_ms']:.1f}, {r['frames_per_cpu_second']:,.0f}{_exact(r)}"
    return f"fan-out {load}: p99 ms, frames/CPU-s", figures


def _spread(r: dict[str, Any]) -> tuple[str, str]:
    errors = f" {r['error_codes']}" if r["error_codes"] else ""
    return f"acks/s, {r['counters']:,} counters x{r['window']}", f"{r['per_second']:,.0f}{errors}"


def _churn(r: dict[str, Any]) -> tuple[str, str]:
    figures = f"{r['joins_per_second']:,.0f}, {r['snapshot_p99_ms']:.1f}"
    return "churn: joins/s, snapshot p99 ms", figures


def _many_counters(r: dict[str, Any]) -> tuple[str, str]:
    return f"many counters on {r['redis']}: incr/s", f"{r['increments_per_second']:,.0f}{_exact(r)}"


# Each results section of python -m bench, and how one of its rows reads.
ROW_MAKERS: dict[str, Callable[[dict[str, Any]], tuple[str, str]]] = {
    "throughput": _throughput,
    "fanout": _fanout,
    "spread": _spread,
    "churn": _churn,
    "many_counters": _many_counters,
}


def rows_of(results: dict[str, Any]) -> Rows:
    rows: Rows = {}
    for section, make in ROW_MAKERS.items():
        for result in results.get(section, []):
            key, value = make(result)
            rows[key] = value
    for failure in results.get("failures", []):
        rows[f"failed: {failure}"] = "yes"
    return rows


def table(columns: dict[str, Rows]) -> str:
    keys = list(dict.fromkeys(key for rows in columns.values() for key in rows))
    lines = ["| row | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(c.get(key, "") for c in columns.values()) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.builds",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=2, help="pure, then compiled, this often")
    parser.add_argument("--out", type=Path, help="keep each run's results here")
    parser.add_argument("bench_args", nargs=argparse.REMAINDER, help="-- python -m bench args")
    args = parser.parse_args(argv)
    bench_args = args.bench_args[1:] if args.bench_args[:1] == ["--"] else args.bench_args
    with tempfile.TemporaryDirectory(prefix="ws-counter-builds-") as scratch:
        print("== compiling the listed modules in a copy of the checkout", flush=True)
        copy = compiled_copy(Path(scratch) / "compiled")
        check_compiled(copy)
        out = args.out or Path(scratch) / "results"
        columns: dict[str, Rows] = {}
        for round_ in range(1, args.rounds + 1):
            for build in BUILDS:
                results = run_bench(build, copy, out / f"{build}-{round_}", bench_args)
                columns[f"{build} {round_}"] = rows_of(results)
    ordered = {
        name: columns[name] for build in BUILDS for name in columns if name.startswith(build)
    }
    print(table(ordered))
    failed = any(key.startswith("failed:") or "NOT EXACT" in value
                 for rows in columns.values() for key, value in rows.items())  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
