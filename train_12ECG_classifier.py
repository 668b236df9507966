"""The official training entry point: the organisers' train_model.py calls this function."""

import logging

from ecg_gcn import config, distributed, report, train


def train_12ECG_classifier(input_directory, output_directory):
    """Fit the CNN-BiGRU-GCN model on the recordings of `input_directory`; save it into
    `output_directory`, with a report of the training (figures, a gallery of the validation
    split's worst mistakes, and report.md) beside it.
    The profile comes from ECG_GCN_PROFILE (`paper` unless set). Under torchrun the processes
    train together (README: "Training on several GPUs") and rank 0 alone writes."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model_config, train_config = config.profile_from_env()
    train.train(input_directory, output_directory, model_config, train_config)
    if not distributed.is_main_process():
        return
    try:
        report.write_report(output_directory, data_dir=input_directory)
    except Exception as error:  # the model is saved; a failed figure must not fail training
        logging.getLogger(__name__).warning("no report: %s", error)
