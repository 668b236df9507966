"""The baselines every model stands beside: prevalence and always normal.

Prevalence gives every recording the training set's class frequencies. It needs no signal, so
it is the floor any trained model must beat: its probabilities give the AUROC of chance, and
its labels (the classes present in at least half of the training recordings, or else the most
frequent one) are nearly always the always-normal answer. Always normal (sinus rhythm alone) is
the challenge metric's zero by definition.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ecg_gcn import labels as lbl
from ecg_gcn import outputs, records
from ecg_gcn.header import HeaderError, parse_header
from ecg_gcn.thresholds import binarize

logger = logging.getLogger(__name__)


def fit(data_dir: str | Path) -> np.ndarray:
    """Fraction of the folder's recordings that carry each of the 24 classes."""
    names = records.find_records(data_dir)
    if not names:
        raise ValueError(f"{data_dir}: no .hea files found")
    counts = np.zeros(lbl.NUM_CLASSES)
    used = 0
    for name in names:
        path = Path(data_dir) / f"{name}.hea"
        try:
            header = parse_header(path.read_bytes(), path=path)
        except (OSError, HeaderError) as error:
            logger.warning("skipping %s: %s", path, error)
            continue
        counts += records.labels_of(header)
        used += 1
    if used == 0:
        raise ValueError(f"{data_dir}: none of the {len(names)} headers could be read")
    return counts / used


def answer(prevalence: np.ndarray) -> tuple[list[int], list[float], list[str]]:
    """(labels, scores, classes) over the 27 scored codes; never an empty label set."""
    return outputs.answer(binarize(prevalence, 0.5), prevalence)


def baselines(prior: np.ndarray, n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(probabilities, labels) of n recordings for each baseline: "prevalence" (the training
    frequencies `prior`, labelled as `answer` labels them) and "always normal"."""
    prevalence = np.tile(np.asarray(prior, dtype=np.float64), (n, 1))
    normal = outputs.always_normal(n)
    return {
        "prevalence": (prevalence, binarize(prevalence, 0.5)),
        "always normal": (normal.astype(np.float64), normal),
    }
