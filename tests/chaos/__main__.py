"""``python -m tests.chaos``: chaos trials on one rig, a table per trial and a total.

    python -m tests.chaos --trials 20 --messages 10000            # mixed faults (make chaos)
    python -m tests.chaos --faults store --trials 1                # one fault alone
    python -m tests.chaos --each                                   # every fault alone, once

Exits 1 when any trial broke an invariant.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.chaos.faults import FAULTS
from tests.chaos.harness import TrialResult, chaos_rig, format_table, run_trial


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument(
        "--faults",
        default=",".join(FAULTS),
        help=f"comma-separated, mixed at random (default all: {','.join(FAULTS)})",
    )
    parser.add_argument("--each", action="store_true", help="each fault alone, then all mixed")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per trial")
    parser.add_argument("--root", type=Path, default=None, help="the rig's directory")
    args = parser.parse_args(argv)
    kinds = [k for k in args.faults.split(",") if k]
    unknown = set(kinds) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults {sorted(unknown)}; known: {sorted(FAULTS)}")
    plan = [[k] for k in kinds] + [kinds] if args.each else [kinds] * args.trials

    root = args.root or Path(tempfile.mkdtemp(prefix="chaos-"))
    results: list[TrialResult] = []
    with chaos_rig(root) as rig:
        _say(f"chaos: {len(plan)} trials of {args.messages} rows in {root}")
        for trial, faults in enumerate(plan):
            result = run_trial(
                rig, trial, messages=args.messages, faults=faults, timeout=args.timeout
            )
            results.append(result)
            _say(f"\ntrial {trial} ({'+'.join(faults)}), transaction {result.tx_id}:")
            for fault in result.faults:
                _say(f"  fault: {fault}")
            for line in result.violations:
                _say(f"  INVARIANT BROKEN: {line}")
            _say(format_table([result]))
    _say("\nall trials:")
    _say(format_table(results))
    return 1 if any(r.violations for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
