"""The driver's output files: four lines per recording, written atomically.

Line 1 is `#` and the recording id, then the class codes, the 0/1 labels and the probabilities,
each joined by commas (as the official template's driver writes them). The official scorer
reads a label as positive only when it is written `1` (or True/T), so labels must be ints,
never `1.0`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ecg_gcn import labels as lbl
from ecg_gcn.atomic import write_atomically

OUTPUT_SUFFIX = ".csv"


def output_name(recording_file: str) -> str:
    """`A0001.mat` -> `A0001.csv` (the name the scorer looks for beside `A0001.hea`)."""
    return os.path.splitext(os.path.basename(recording_file))[0] + OUTPUT_SUFFIX


def format_output(
    record: str, classes: Sequence[str], labels: Sequence[object], scores: Sequence[object]
) -> str:
    """The four lines of an output file, each value written with `str()` as the official
    driver does."""
    return (
        "\n".join(
            [
                f"#{record}",
                ",".join(classes),
                ",".join(str(x) for x in labels),
                ",".join(str(x) for x in scores),
            ]
        )
        + "\n"
    )


def write_output(folder: str | Path, recording_file: str, text: str) -> Path:
    """Write one output file atomically: a reader never sees half a file."""
    path = Path(folder) / output_name(recording_file)
    return write_atomically(path, lambda tmp: Path(tmp).write_text(text))


def answer(labels: np.ndarray, scores: np.ndarray) -> tuple[list[int], list[float], list[str]]:
    """(labels, scores, classes) over the 27 scored codes, as `run_12ECG_classifier` returns
    them, from labels and scores over the 24 classes: both members of an equivalent pair get
    their class's values; labels are ints 0/1 (the scorer reads `1.0` as negative), scores
    floats."""
    return (
        [int(x) for x in lbl.expand(np.asarray(labels).astype(int))],
        [float(x) for x in lbl.expand(np.asarray(scores, dtype=np.float64))],
        list(lbl.SCORED_CODES),
    )


def always_normal(n: int) -> np.ndarray:
    """(n, 24) labels saying sinus rhythm and nothing else, for n recordings."""
    labels = np.zeros((n, lbl.NUM_CLASSES), dtype=bool)
    labels[:, lbl.NORMAL_INDEX] = True
    return labels


def normal_answer() -> tuple[list[int], list[float], list[str]]:
    """(labels, scores, classes) saying sinus rhythm and nothing else: the conservative answer
    for a recording that cannot be read, scored 0 by the challenge metric by construction."""
    normal = always_normal(1)[0]
    return answer(normal, normal.astype(np.float64))
