#!/usr/bin/env python
"""Classify every recording of a folder, as the organisers' driver does.

    python driver.py MODEL_DIR INPUT_DIR OUTPUT_DIR

Loads the model that train_model.py wrote to MODEL_DIR once, then writes OUTPUT_DIR/<record>.csv
for every <record>.mat of INPUT_DIR (with its <record>.hea beside it): the record id, the 27
scored codes, the 0/1 labels and the probabilities. The contract is the official template's
(its output format is written out in `ecg_gcn/outputs.py`). This driver adds a progress bar,
clear errors, atomic writes, and an output for every recording and every header: one that
cannot be read or classified gets a warning and the always-normal answer, so the scorer never
finds a file missing.
"""

import logging
import os
import sys

import numpy as np
from tqdm import tqdm

from ecg_gcn.outputs import format_output, normal_answer, write_output
from ecg_gcn.records import RecordError, companion, find_records, load_mat
from run_12ECG_classifier import load_12ECG_model, run_12ECG_classifier


def find_recordings(input_directory):
    """The official discovery (regular files, not hidden, whose lower-cased name ends in `mat`),
    plus every header whose `.mat` is missing or not a file: the scorer wants an output for each
    header, so those get the always-normal answer with a warning, not silence."""
    names, stems = [], set()
    for name in sorted(os.listdir(input_directory)):
        path = os.path.join(input_directory, name)
        if os.path.isfile(path) and not name.startswith(".") and name.lower().endswith("mat"):
            names.append(name)
            stems.add(os.path.splitext(name)[0])
    for stem in find_records(input_directory):
        if stem not in stems:
            names.append(stem + ".mat")
    return names


def load_challenge_data(mat_path):
    """The recording as the official driver passes it: `val` as float64, header lines. The
    `.mat` is read by training's reader, which checks its declared size before loading it and
    refuses a `val` that is not a real numeric leads x samples array."""
    if not os.path.isfile(mat_path):
        raise RecordError(f"{mat_path}: the signal file is missing")
    data = np.asarray(load_mat(mat_path), dtype=np.float64)  # what training's reader checks
    header_path = companion(os.path.splitext(mat_path)[0], ".hea")
    with open(header_path, errors="replace") as f:
        header_data = f.readlines()
    return data, header_data


class RecordingWarnings(logging.Handler):
    """Shows the package's warnings above the progress bar, each naming the recording being
    read (the header may not know its own name)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.recording = ""

    def emit(self, record):
        tqdm.write(f"warning: {self.recording}: {record.getMessage()}", file=sys.stderr)


WARNINGS = RecordingWarnings()


def classify(mat_path, model):
    """(labels, scores, classes) for one recording; the always-normal answer if it fails."""
    WARNINGS.recording = mat_path
    try:
        data, header_data = load_challenge_data(mat_path)
        return run_12ECG_classifier(data, header_data, model)
    except Exception as error:  # one bad recording must not cost the others their outputs
        tqdm.write(
            f"warning: {mat_path}: {type(error).__name__}: {error}; "
            "writing the always-normal answer",
            file=sys.stderr,
        )
        return normal_answer()


def main(argv):
    if len(argv) != 4:
        sys.exit("usage: python driver.py MODEL_DIR INPUT_DIR OUTPUT_DIR")
    model_directory, input_directory, output_directory = argv[1:]
    if not os.path.isdir(input_directory):
        sys.exit(f"error: input folder {input_directory} does not exist")
    if os.path.isfile(model_directory):
        sys.exit(
            f"error: {model_directory} is a file; MODEL_DIR is the folder train_model.py wrote"
        )
    try:
        if not os.path.isdir(output_directory):
            os.mkdir(output_directory)
    except OSError as error:  # a file of that name, a missing or read-only parent, ...
        sys.exit(f"error: cannot make the output folder {output_directory}: {error.strerror}")

    package_log = logging.getLogger("ecg_gcn")
    package_log.addHandler(WARNINGS)
    package_log.propagate = False

    print("Loading 12ECG model...")
    try:
        model = load_12ECG_model(model_directory)
    except (OSError, ValueError) as error:  # missing, damaged or inconsistent: says which
        sys.exit(f"error: {error}")

    print("Extracting 12ECG features...")
    names = find_recordings(input_directory)
    for name in tqdm(names, unit="rec", disable=None):
        labels, scores, classes = classify(os.path.join(input_directory, name), model)
        record = os.path.splitext(name)[0]
        try:
            write_output(output_directory, name, format_output(record, classes, labels, scores))
        except OSError as error:  # unwritable, read-only or full: every later file would fail
            sys.exit(f"error: cannot write into {output_directory}: {error.strerror or error}")
    if not names:
        print(f"No recording (.mat or .hea) found in {input_directory}.")
    print("Done.")


if __name__ == "__main__":
    main(sys.argv)
