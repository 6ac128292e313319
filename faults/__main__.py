"""``python -m faults``: run fault scenarios and print each run's verdict (as root)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from .report import print_run
from .scenarios import SCENARIOS, run


def main(argv: list[str] | None = None) -> int:
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
