"""The official inference entry points: the organisers' driver calls these two functions."""

from ecg_gcn import predict


def load_12ECG_model(input_directory):
    """Load the model that train_12ECG_classifier wrote into `input_directory`, once."""
    return predict.load(input_directory)


def run_12ECG_classifier(data, header_data, loaded_model):
    """Classify one recording.

    data: the `val` array of its .mat file (leads x samples, ADC units); header_data: the lines of
    its .hea file. Returns (labels, scores, classes) over the 27 scored SNOMED-CT codes: ints 0/1,
    floats in [0, 1], codes as strings. Never raises on a bad recording: it warns and answers
    always-normal.
    """
    return predict.classify(data, header_data, loaded_model)
