"""Time the scorer on 10,000 recordings made from the golden cases.

    python -m bench.bench_scorer [--n 10000] [--mixed]

The label headers and output CSVs of tests/data/scorer_cases (all of their corner cases) are
copied round-robin into a temporary folder until there are N recordings, then the whole command
line `evaluate_12ECG_score.py LABELS OUTPUTS scores.csv` is timed (interpreter start included),
best of three. The official scorer takes about 8.4 s for 10,000 such recordings on our 2-core
machines; the target is under 1 s. (`python -m bench.benchmark` runs the same measurement.)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.benchmark import scorer_folders, scorer_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="recordings (default 10000)")
    parser.add_argument(
        "--mixed", action="store_true", help="every output file with its columns in its own order"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        labels, outputs = scorer_folders(Path(tmp), args.n, mixed=args.mixed)
        seconds = scorer_seconds(labels, outputs, Path(tmp) / "scores.csv")
        print(f"scorer: {args.n} recordings in {seconds:.3f} s (whole command, best of 3)")
        print((Path(tmp) / "scores.csv").read_text())


if __name__ == "__main__":
    main()
