#!/usr/bin/env python
"""Score a classifier's outputs as the PhysioNet/CinC Challenge 2020 does.

    python evaluate_12ECG_score.py LABEL_DIR OUTPUT_DIR [SCORES_CSV [CLASS_SCORES_CSV]]

LABEL_DIR holds the recordings' headers (their `#Dx` lines are the labels), OUTPUT_DIR one CSV per
header as driver.py writes them. With two arguments the scores are printed; with three they are
written to SCORES_CSV; with four the per-class AUROC, AUPRC and F-measure go to CLASS_SCORES_CSV
too. The files are byte-identical to those of the official scorer (evaluation-2020), and
weights.csv is read from beside this file, so it runs from any folder.
"""

import sys
from pathlib import Path

from ecg_gcn.evaluation import EvaluationError, evaluate

WEIGHTS = Path(__file__).resolve().parent / "weights.csv"


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4, 5):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        print(
            "error: give the label folder, the output folder and up to two score files",
            file=sys.stderr,
        )
        return 2
    try:
        result = evaluate(argv[1], argv[2], weights_file=WEIGHTS)
    except (EvaluationError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if len(argv) == 3:
        print(result.score_string())
        return 0
    with open(argv[3], "w") as f:
        f.write(result.score_string())
    if len(argv) == 5:
        with open(argv[4], "w") as f:
            f.write(result.class_score_string())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
