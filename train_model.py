#!/usr/bin/env python
"""Train the entry on a folder of recordings, as the organisers' script does.

    python train_model.py DATA_DIR MODEL_DIR

Reads every <record>.hea / <record>.mat pair of DATA_DIR and writes the trained model into
MODEL_DIR (made if missing), which driver.py then takes as its first argument.
"""

import os
import sys

from train_12ECG_classifier import train_12ECG_classifier


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: python train_model.py DATA_DIR MODEL_DIR")
    input_directory, output_directory = argv[1:]
    if not os.path.isdir(input_directory):
        sys.exit(f"error: training folder {input_directory} does not exist")
    # exist_ok: under torchrun every process gets here at about the same time.
    try:
        os.makedirs(output_directory, exist_ok=True)
    except OSError as error:  # a file of that name, a read-only parent, ...
        sys.exit(f"error: cannot make the model folder {output_directory}: {error.strerror}")

    print("Running training code...")
    try:
        train_12ECG_classifier(input_directory, output_directory)
    except (OSError, ValueError) as error:  # nothing to train on, an unwritable cache, ...
        sys.exit(f"error: {error}")
    print("Done.")


if __name__ == "__main__":
    main(sys.argv)
