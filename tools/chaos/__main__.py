"""python -m tools.chaos --minutes N --seed S [--rate R] [--skew F] [--workdir DIR]

Prints the verdict in one line; exit 0 when the run passed, 1 when the checker found a
failure (each one is printed), 2 on a bad argument.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tools.chaos.run import Options, chaos
from tools.chaos.supervisor import ChaosFailure


def main() -> None:
    parser = argparse.ArgumentParser(description="a chaos run of the whole pipeline")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=200.0, help="clicks per second")
    parser.add_argument("--skew", type=float, default=0.3, help="share of clicks by 3 hot users")
    parser.add_argument(
        "--faults", type=int, help="faults beyond one of each kind (default: one a minute)"
    )
    parser.add_argument("--workdir", type=Path, help="default: chaos-runs/seed-S")
    args = parser.parse_args()
    if args.minutes < 1.5:
        parser.error("--minutes must be at least 1.5: each fault kind needs room")
    workdir = args.workdir or Path("chaos-runs") / f"seed-{args.seed}"
    options = Options(args.minutes, args.seed, workdir.resolve(), args.rate, args.skew, args.faults)
    try:
        verdict, line = chaos(options)
    except ChaosFailure as ex:
        print(f"chaos seed {args.seed}: FAIL: {ex}", file=sys.stderr)
        sys.exit(1)
    print(line)
    for failure in verdict.failures:
        print(f"  {failure}")
    sys.exit(1 if verdict.failures else 0)


if __name__ == "__main__":
    main()
