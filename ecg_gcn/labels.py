"""The scored SNOMED-CT diagnoses of the 2020 Challenge and their weight matrix.

weights.csv (beside the repository root) is the single source of truth: its 27 codes, in its
order, are what `run_12ECG_classifier` reports; merging the three equivalent pairs onto their first
member gives the 24 classes the scorer and the network work with.
"""

from __future__ import annotations

import csv
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from ecg_gcn import ROOT

WEIGHTS_CSV = ROOT / "weights.csv"
DX_MAPPING_SCORED_CSV = ROOT / "dx_mapping_scored.csv"

NORMAL_CODE = "426783006"  # sinus rhythm: the "always normal" baseline of the challenge metric
# Decided with the measured beats where they are clear (ecg_gcn.measure): atrial fibrillation,
# premature atrial and ventricular beats, complete and incomplete right bundle branch block.
AF_CODE, PAC_CODE, PVC_CODE = "164889003", "284470004", "427172004"
CRBBB_CODE, IRBBB_CODE = "713427006", "713426002"
NSIVCB_CODE, SA_CODE = "698252002", "427393009"  # nonspecific IVCD, sinus arrhythmia
IAVB_CODE, LPR_CODE = "270492004", "164947007"  # 1st degree AV block, prolonged PR interval
LQT_CODE = "111975006"  # prolonged QT interval
LQRSV_CODE = "251146004"  # low QRS voltages

# Scored as one diagnosis each; the first code is the representative (evaluation-2020, 2020-08).
EQUIVALENT_PAIRS: tuple[tuple[str, str], ...] = (
    ("713427006", "59118001"),  # complete RBBB = RBBB
    ("284470004", "63593006"),  # PAC = SVPB
    ("427172004", "17338001"),  # PVC = VPB
)
REPRESENTATIVE: dict[str, str] = {b: a for a, b in EQUIVALENT_PAIRS}


def representative(code: str) -> str:
    """The code the scorer counts `code` as (itself unless it is the second of a pair)."""
    return REPRESENTATIVE.get(code, code)


def read_table(path: Path | str) -> tuple[list[str], list[str], np.ndarray]:
    """Read a square CSV table with codes in its first row and column.

    Returns (row codes, column codes, values); a cell that is not a number becomes NaN, as the
    official scorer reads it.
    """
    with open(path, newline="") as f:
        table = [[cell.strip() for cell in row] for row in csv.reader(f)]
    if len(table) < 2:
        raise ValueError(f"{path}: the table is empty")
    widths = {len(row) for row in table[1:]}
    if len(widths) != 1 or min(widths) < 2:
        raise ValueError(f"{path}: the rows have different lengths")
    cols = table[0][1:]
    rows = [row[0] for row in table[1:]]
    values = np.array([[_to_float(cell) for cell in row[1:]] for row in table[1:]])
    return rows, cols, values


def _to_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


@lru_cache(maxsize=4)
def load_weights(path: Path | str = WEIGHTS_CSV) -> tuple[tuple[str, ...], np.ndarray]:
    """The merged classes and their weight matrix, as the official scorer derives them.

    Each code is replaced by its representative, the rows and columns of merged codes must be
    identical, and the first occurrence of each class is kept.
    """
    rows, cols, values = read_table(path)
    if rows != cols:
        raise ValueError(f"{path}: the row codes and the column codes differ")
    merged = [representative(code) for code in rows]
    classes: list[str] = []
    first: list[int] = []
    for i, code in enumerate(merged):
        if code in classes:
            j = first[classes.index(code)]
            same_row = np.array_equal(values[i], values[j], equal_nan=True)
            same_col = np.array_equal(values[:, i], values[:, j], equal_nan=True)
            if not (same_row and same_col):
                raise ValueError(f"{path}: equivalent codes {rows[j]} and {rows[i]} differ")
            continue
        classes.append(code)
        first.append(i)
    weights = values[np.ix_(first, first)]
    weights.setflags(write=False)
    return tuple(classes), weights


@lru_cache(maxsize=1)
def scored_codes() -> tuple[str, ...]:
    """The 27 scored codes in weights.csv order (what the driver's output files list)."""
    rows, _, _ = read_table(WEIGHTS_CSV)
    return tuple(rows)


@lru_cache(maxsize=1)
def abbreviations() -> dict[str, str]:
    """SNOMED code -> short name (AF, RBBB, ...) from dx_mapping_scored.csv."""
    with open(DX_MAPPING_SCORED_CSV, newline="") as f:
        return {row["SNOMED CT Code"]: row["Abbreviation"] for row in csv.DictReader(f)}


CLASSES, WEIGHTS = load_weights()
NUM_CLASSES = len(CLASSES)  # 24
SCORED_CODES = scored_codes()  # 27
NORMAL_INDEX = CLASSES.index(NORMAL_CODE)
AF_INDEX, PAC_INDEX, PVC_INDEX = (CLASSES.index(c) for c in (AF_CODE, PAC_CODE, PVC_CODE))
CRBBB_INDEX, IRBBB_INDEX = (CLASSES.index(c) for c in (CRBBB_CODE, IRBBB_CODE))
NSIVCB_INDEX, SA_INDEX = (CLASSES.index(c) for c in (NSIVCB_CODE, SA_CODE))
IAVB_INDEX, LPR_INDEX = (CLASSES.index(c) for c in (IAVB_CODE, LPR_CODE))
LQT_INDEX, LQRSV_INDEX = CLASSES.index(LQT_CODE), CLASSES.index(LQRSV_CODE)
CLASS_INDEX = {code: i for i, code in enumerate(CLASSES)}


def encode(codes: list[str] | tuple[str, ...]) -> np.ndarray:
    """Multi-hot vector over the 24 classes; unscored codes are dropped."""
    y = np.zeros(NUM_CLASSES, dtype=bool)
    for code in codes:
        i = CLASS_INDEX.get(representative(code.strip()))
        if i is not None:
            y[i] = True
    return y


def expand(per_class: np.ndarray) -> np.ndarray:
    """Map values over the 24 classes to the 27 scored codes; both members of a pair share one."""
    per_class = np.asarray(per_class)
    index = [CLASS_INDEX[representative(code)] for code in SCORED_CODES]
    return per_class[..., index]


# The 2020 databases by the letters of their record names.
SOURCES = {
    "A": "CPSC",
    "Q": "CPSC-Extra",
    "I": "INCART",
    "S": "PTB",
    "HR": "PTB-XL",
    "E": "Georgia",
    "JS": "Chapman-Ningbo",
}


def source_of(name: str) -> str:
    """The database a 2020 record comes from, by its name's letters (HR00001 -> PTB-XL)."""
    prefix = re.match(r"[A-Za-z]*", name).group(0)
    return SOURCES.get(prefix, prefix or "unknown")


def known_classes(
    names: list[str], labels: np.ndarray, among: np.ndarray, fully_labelled: np.ndarray
) -> np.ndarray:
    """Which of each record's 24 labels are known: (records, classes) bool.

    The 2020 databases were labelled with different code lists: CPSC's 6,877 recordings carry 6
    of the 24 classes, and none says sinus tachycardia or left axis deviation, which its
    recordings show at their usual rates. A missing label there means "not looked for", not
    "absent". A class is unknown for a database's records when none of its records among
    `among` carries it, but a record of another database (or of `fully_labelled`, the
    synthetic records, whose every label is known) does. A class no record carries stays known
    everywhere: nothing says it was looked for elsewhere, and its negatives are all there is.
    """
    labels = np.asarray(labels, dtype=bool)
    sources = np.array([source_of(name) for name in names])
    fully = np.zeros(len(names), dtype=bool)
    fully[np.asarray(fully_labelled, dtype=np.int64)] = True
    sources[fully] = ""  # one group of its own, whatever its names look like
    among = np.asarray(among, dtype=np.int64)
    carried = {s: labels[among[sources[among] == s]].any(axis=0) for s in set(sources[among])}
    anywhere = labels[among].any(axis=0)
    known = np.ones(labels.shape, dtype=bool)
    for source, has in carried.items():
        if source:
            known[sources == source] = has | ~anywhere
    return known
