"""The official training entry point: the organisers' train_model.py calls this function."""

from ecg_gcn import baseline


def train_12ECG_classifier(input_directory, output_directory):
    """Fit a model on the recordings of `input_directory` and save it into `output_directory`."""
    baseline.save(baseline.fit(input_directory), output_directory)
