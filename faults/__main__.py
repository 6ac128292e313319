"""``python -m faults``: run fault scenarios and print each run's verdict (as root).

``python -m faults soak [--minutes M]`` runs the soak instead (faults/soak.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from .report import print_run
from .scenarios import SCENARIOS, run
from .soak import MODES, soak


def soak_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m faults soak",
        description="Every Redis mode (one Redis, Sentinel, Redis Cluster) through idle and"
        " load on loopback, with /readyz read every 0.1 s: exit 0 only if every mode passes.",
    )
    parser.add_argument("--minutes", type=float, default=60.0, help="in all, over the modes (60)")
    parser.add_argument("--mode", action="append", choices=list(MODES), help="only these")
    parser.add_argument("--out", type=Path, help="where to keep logs and soak.json")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="ws-counter-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    results = soak(args.minutes, out, args.mode)
    print(f"logs and soak.json in {out}")
    return 0 if all(result.passed for result in results) else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["soak"]:
        return soak_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m faults", description=__doc__)
    parser.add_argument("scenarios", nargs="*", help="names to run (default: all)")
    parser.add_argument("--runs", type=int, default=1, help="runs of each scenario (1)")
    parser.add_argument("--out", type=Path, help="where to keep logs, histories and plots")
    args = parser.parse_args(argv)
    chosen = [s for s in SCENARIOS if not args.scenarios or s.name in args.scenarios]
    out = args.out or Path(tempfile.mkdtemp(prefix="ws-counter-faults-"))
    failed = 0
    for scenario in chosen:
        for number in range(args.runs):
            result = run(scenario, out / f"{scenario.name}-{number}")
            print_run(result, out / f"{scenario.name}-{number}.png")
            failed += not result.verdict.valid
    print(f"logs and plots in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
