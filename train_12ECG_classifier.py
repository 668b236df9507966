"""The official training entry point: the organisers' train_model.py calls this function."""

import logging

from ecg_gcn import config, train


def train_12ECG_classifier(input_directory, output_directory):
    """Fit the CNN-BiGRU-GCN model on the recordings of `input_directory`; save it into
    `output_directory`. The profile comes from ECG_GCN_PROFILE (`paper` unless set)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model_config, train_config = config.profile_from_env()
    train.train(input_directory, output_directory, model_config, train_config)
