"""The official 2020 evaluation: label and output files in, the seven scores out.

File discovery, parsing and the printed lines follow evaluation-2020 (commit 8ad0242) exactly, so
that `evaluate_12ECG_score.py` writes byte-identical score files; the arithmetic is in
`ecg_gcn.scoring`. Two departures, both on inputs where the official scorer goes wrong: a label
header without a `#Dx: ` line, or with two, stops with an error naming the file (the official
scorer crashes with an IndexError, or silently shifts every later recording's labels).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecg_gcn import labels as lbl
from ecg_gcn import scoring

POSITIVE = frozenset({"1", "True", "true", "T", "t"})  # anything else, "1.0" included, is 0

SCORE_HEADER = "AUROC,AUPRC,Accuracy,F-measure,Fbeta-measure,Gbeta-measure,Challenge metric"


class EvaluationError(Exception):
    """The label or output folder cannot be scored; the message says which file and why."""


@dataclass(frozen=True)
class Evaluation:
    classes: tuple[str, ...]
    auroc: float
    auprc: float
    auroc_classes: np.ndarray
    auprc_classes: np.ndarray
    accuracy: float
    f_measure: float
    f_measure_classes: np.ndarray
    f_beta_measure: float
    g_beta_measure: float
    challenge_metric: float

    def score_string(self) -> str:
        """The two lines of the score file, without a trailing newline."""
        values = (
            self.auroc,
            self.auprc,
            self.accuracy,
            self.f_measure,
            self.f_beta_measure,
            self.g_beta_measure,
            self.challenge_metric,
        )
        return SCORE_HEADER + "\n" + ",".join(f"{v:.3f}" for v in values)

    def class_score_string(self) -> str:
        """The four lines of the per-class score file, without a trailing newline."""

        def row(name: str, values: np.ndarray) -> str:
            return name + "," + ",".join(f"{v:.3f}" for v in values)

        return "\n".join(
            [
                "Classes," + ",".join(self.classes),
                row("AUROC", self.auroc_classes),
                row("AUPRC", self.auprc_classes),
                row("F-measure", self.f_measure_classes),
            ]
        )


def _regular_files(folder: str) -> set[str]:
    with os.scandir(folder) as entries:
        return {entry.name for entry in entries if entry.is_file()}


def label_names(label_dir: str | Path) -> list[str]:
    """The label headers of a folder as the scorer finds them: `.hea` in any case, no hidden
    files, sorted."""
    return sorted(
        name
        for name in _regular_files(str(label_dir))
        if name.lower().endswith(".hea") and not name.startswith(".")
    )


def find_challenge_files(label_dir: str, output_dir: str) -> tuple[list[str], list[str]]:
    """Pairs of (label header, output CSV), sorted by header name; every header needs its CSV."""
    outputs = _regular_files(output_dir)
    label_files, output_files = [], []
    for name in label_names(label_dir):
        csv_name = os.path.splitext(name)[0] + ".csv"
        if csv_name not in outputs:
            raise EvaluationError(f"Output file {csv_name} not found for label file {name}.")
        label_files.append(os.path.join(label_dir, name))
        output_files.append(os.path.join(output_dir, csv_name))
    if not label_files:
        raise EvaluationError("No label or output files found.")
    return label_files, output_files


def _read_lines(path: str) -> list[str]:
    """The lines of a text file as the official scorer's text-mode reading sees them.

    Plain os.read is about twice as fast as open() per small file, and the scorer reads 20,000
    of them for 10,000 recordings. Newlines are universal (CRLF and CR count as LF) as in text
    mode; undecodable bytes are replaced rather than fatal.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    text = b"".join(chunks).decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def load_labels(label_files: list[str], classes: tuple[str, ...]) -> np.ndarray:
    """(N, K) boolean labels from each header's `#Dx: ` line; unscored codes are dropped."""
    index = {code: i for i, code in enumerate(classes)}
    labels = np.zeros((len(label_files), len(classes)), dtype=bool)
    for row, path in enumerate(label_files):
        dx_lines = [line for line in _read_lines(path) if line.startswith("#Dx")]
        if len(dx_lines) != 1:
            raise EvaluationError(
                f"{path}: the label header has {len(dx_lines)} '#Dx' lines; it needs exactly one"
            )
        fields = dx_lines[0].split(": ")
        if len(fields) < 2:
            raise EvaluationError(f"{path}: the '#Dx' line has no ': ' before its codes")
        for code in fields[1].split(","):
            i = index.get(lbl.representative(code.strip()))
            if i is not None:
                labels[row, i] = True
    return labels


def _floats(line: str) -> list[float]:
    # float() ignores surrounding whitespace as the official strip() does; a value that is not a
    # number counts as 0, and "nan" parses as NaN.
    try:
        return list(map(float, line.split(",")))
    except ValueError:
        values = []
        for text in line.split(","):
            try:
                values.append(float(text))
            except ValueError:
                values.append(0.0)
        return values


def split_output(text_lines: list[str]) -> tuple[str, list[bool], list[float]]:
    """(code line, binary values, scores) of one output CSV, in its own column order.

    Raises ValueError where the official scorer calls the file malformed: fewer than three
    lines that are neither blank nor comments, or lines with different numbers of fields.
    """
    lines = [line for line in text_lines if line.strip() and not line.strip().startswith("#")]
    if len(lines) < 3 or len({line.count(",") for line in lines}) != 1:
        raise ValueError("fewer than three lines, or lines of different lengths")
    binary = [value.strip() in POSITIVE for value in lines[1].split(",")]
    return lines[0], binary, _floats(lines[2])


def _layout(code_line: str, classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(class index, column) of each column of the code line that is a scored class, ordered
    by class and then column (a class may have two columns: both members of a pair)."""
    codes = [lbl.representative(code.strip()) for code in code_line.split(",")]
    index = {cls: i for i, cls in enumerate(classes)}
    pairs = sorted((index[code], c) for c, code in enumerate(codes) if code in index)
    return (
        np.array([i for i, _ in pairs], dtype=np.int64),
        np.array([c for _, c in pairs], dtype=np.int64),
    )


def load_outputs(
    output_files: list[str], classes: tuple[str, ...], log=print
) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) binary outputs and (N, K) scores; a malformed file counts as all negative.

    Where both members of an equivalent pair are given, the class is positive if either is,
    and its score is the mean of the two that are not NaN, as the official scorer's nanmean
    (NaN, then 0, where both are). Files are grouped by their code line (a driver writes the
    same one in every file); every value then lands on its (recording, class) cell in one
    `np.bincount`, however many different layouts the files have.
    """
    n, k = len(output_files), len(classes)
    groups: dict[str, tuple[list[int], list[list[bool]], list[list[float]]]] = {}
    for row, path in enumerate(output_files):
        try:
            code_line, binary_in, scores_in = split_output(_read_lines(path))
        except ValueError:
            log(
                f"- The output file {path} has formatting errors, so all outputs are assumed "
                "to be negative for this recording."
            )
            continue
        rows, binaries, values = groups.setdefault(code_line, ([], [], []))
        rows.append(row)
        binaries.append(binary_in)
        values.append(scores_in)
    cells, positive, value = [np.zeros(0, dtype=np.int64)], [np.zeros(0, bool)], [np.zeros(0)]
    for code_line, (rows, binaries, values) in groups.items():
        class_index, columns = _layout(code_line, classes)
        # Row-major: a recording's values for one class stay in column order, as nanmean adds.
        cells.append((np.array(rows)[:, None] * k + class_index[None, :]).ravel())
        positive.append(np.array(binaries, dtype=bool)[:, columns].ravel())
        value.append(np.array(values, dtype=np.float64)[:, columns].ravel())
    cells, positive, value = np.concatenate(cells), np.concatenate(positive), np.concatenate(value)
    binary = np.bincount(cells[positive], minlength=n * k).reshape(n, k) > 0
    finite = ~np.isnan(value)
    total = np.bincount(cells[finite], weights=value[finite], minlength=n * k)
    count = np.bincount(cells[finite], minlength=n * k)
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = (total / count).reshape(n, k)
    scores[np.isnan(scores)] = 0.0
    return binary, scores


def evaluate(
    label_dir: str | Path,
    output_dir: str | Path,
    weights_file: str | Path = lbl.WEIGHTS_CSV,
    log=print,
) -> Evaluation:
    """Score every recording of `label_dir` against its CSV in `output_dir`, printing progress
    lines as the official scorer does (pass `log=lambda *_: None` to silence them)."""
    log("Loading weights...")
    classes, weights = lbl.load_weights(weights_file)
    normal_index = classes.index(lbl.NORMAL_CODE)

    log("Loading label and output files...")
    label_files, output_files = find_challenge_files(str(label_dir), str(output_dir))
    labels = load_labels(label_files, classes)
    binary, scores = load_outputs(output_files, classes, log=log)

    log("Evaluating model...")
    log("- AUROC and AUPRC...")
    auroc, auprc, auroc_classes, auprc_classes = scoring.auc(labels, scores)
    log("- Accuracy...")
    accuracy = scoring.accuracy(labels, binary)
    log("- F-measure...")
    f_measure, f_measure_classes = scoring.f_measure(labels, binary)
    log("- F-beta and G-beta measures...")
    f_beta, g_beta = scoring.beta_measures(labels, binary, beta=2)
    log("- Challenge metric...")
    challenge = scoring.challenge_metric(labels, binary, weights, normal_index)
    log("Done.")
    return Evaluation(
        classes=classes,
        auroc=auroc,
        auprc=auprc,
        auroc_classes=auroc_classes,
        auprc_classes=auprc_classes,
        accuracy=accuracy,
        f_measure=f_measure,
        f_measure_classes=f_measure_classes,
        f_beta_measure=f_beta,
        g_beta_measure=g_beta,
        challenge_metric=challenge,
    )
