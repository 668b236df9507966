"""From a trained checkpoint (ecg_gcn.checkpoint) to the clinical answer: windows,
probabilities, labels.

A recording is preprocessed exactly as in training, cut into windows of the training length
covering it all (the last one aligned to its end; a short record is one zero-padded window),
and the windows' probabilities are averaged. The paper is silent on long records; averaging is
what the 2020 winner did, and unlike the maximum it does not turn one noisy window of a 30-minute
recording into a false positive.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ecg_gcn import checkpoint, measure, nets, outputs, records, signal
from ecg_gcn import config as cfg
from ecg_gcn import labels as lbl
from ecg_gcn import thresholds as thr
from ecg_gcn.device import pick_device

logger = logging.getLogger(__name__)

# Windows per forward pass at inference: a 30-minute record is 100 windows of 18 s.
WINDOW_BATCH = 16

# Training's switches of the measured rules (TrainConfig), each with the columns of
# `measure.record` it reads: a rule off is its columns set to NaN, which decide nothing.
RULE_COLUMNS: dict[str, tuple[int, ...]] = {
    "rhythm_rules": (measure.IRREGULARITY, measure.PREMATURE_BEAT),
    "rbbb_rule": (measure.V1_TERMINAL,),
    "veto_rules": (
        measure.QRS_DURATION,
        measure.RR_SPREAD,
        measure.PR_INTERVAL,
        measure.QTC,
        measure.LIMB_QRS,
        measure.CHEST_QRS,
    ),
}


def rule_flags(source: object) -> dict[str, bool]:
    """The measured rules' switches of a TrainConfig or Predictor, or of a checkpoint's saved
    train_config (a dict: a switch it lacks, saved before its rule, is off)."""
    if isinstance(source, Mapping):
        return {name: source.get(name) is True for name in RULE_COLUMNS}
    return {name: getattr(source, name) for name in RULE_COLUMNS}


@dataclass
class Predictor:
    """A trained model ready for inference on one device."""

    model: nets.ECGNet
    model_config: cfg.ModelConfig
    thresholds: np.ndarray
    preprocess: signal.Preprocess  # training's, applied alike here
    device: torch.device
    # The measured beats decide where they are clear (ecg_gcn.measure): the rhythm AF and
    # premature beats (training's `rhythm_rules`), V1's late R' a right bundle branch block
    # (`rbbb_rule`), and the vetoes of classes whose defining measure is absent (`veto_rules`);
    # saved with the checkpoint, each off for a checkpoint without it.
    rhythm_rules: bool = False
    rbbb_rule: bool = False
    veto_rules: bool = False

    @torch.inference_mode()
    def probabilities_many(self, signals: Iterable[np.ndarray]) -> np.ndarray:
        """(N, 24) probabilities of N preprocessed (12, n) recordings (`signal.preprocess` with
        this predictor's settings).

        `signals` may be a generator: windows are cut as recordings arrive and run in batches of
        WINDOW_BATCH, so memory holds one batch and one recording's windows, however many
        recordings there are.
        """
        counts: list[int] = []
        pending: list[np.ndarray] = []  # windows not yet run
        per_window: list[np.ndarray] = []

        def run(windows: np.ndarray) -> None:
            x = torch.from_numpy(windows).to(self.device)
            per_window.append(torch.sigmoid(self.model(x).float()).cpu().numpy())

        for x in signals:
            x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
            w = signal.windows(x, self.preprocess.window)
            counts.append(len(w))
            pending.append(w.astype(np.float32, copy=False))
            if sum(map(len, pending)) >= WINDOW_BATCH:
                stacked = np.concatenate(pending)
                full = len(stacked) - len(stacked) % WINDOW_BATCH
                for start in range(0, full, WINDOW_BATCH):
                    run(stacked[start : start + WINDOW_BATCH])
                pending = [stacked[full:]]
        if not counts:
            return np.zeros((0, lbl.NUM_CLASSES))
        if sum(map(len, pending)):
            run(np.concatenate(pending))
        probabilities = np.concatenate(per_window).astype(np.float64)
        ends = np.cumsum(counts)
        return np.stack(
            [probabilities[end - n : end].mean(axis=0) for n, end in zip(counts, ends, strict=True)]
        )

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(24,) probabilities of one preprocessed recording."""
        return self.probabilities_many([x])[0]

    def measured(self, signals: Iterable[np.ndarray]) -> np.ndarray | None:
        """(N, measure.COLUMNS) measured beats of N preprocessed recordings
        (`measure.records`), which `decide` needs for the rules; None when this model decides
        without them."""
        if not any(rule_flags(self).values()):
            return None
        return measure.records(signals, self.preprocess.fs)

    def decide(self, probabilities: np.ndarray, measured: np.ndarray | None = None) -> np.ndarray:
        """(N, 24) labels of N recordings' probabilities; `measured` their `measured(...)`, for
        the rules this model was trained with (None decides by the thresholds alone)."""
        if measured is not None:
            measured = np.array(measured, dtype=np.float64)  # a copy: the rules off are NaN
            for name, on in rule_flags(self).items():
                if not on:
                    measured[..., list(RULE_COLUMNS[name])] = np.nan
        return thr.decide(probabilities, self.thresholds, measured)

    def answer(
        self, probabilities: np.ndarray, x: np.ndarray | None = None
    ) -> tuple[list[int], list[float], list[str]]:
        """(labels, scores, classes) over the 27 scored codes, as the driver writes them:
        ints 0/1, floats in [0, 1], codes as strings; never an empty label set. `x` is the
        preprocessed recording, for the measured rules."""
        probabilities = np.clip(np.nan_to_num(probabilities, nan=0.0), 0.0, 1.0)
        measured = None if x is None else self.measured([x])
        return outputs.answer(self.decide(probabilities[None], measured)[0], probabilities)


def load(model_dir: str | Path, device: torch.device | None = None) -> Predictor:
    """The Predictor saved in `model_dir`; a clear error naming the file when it cannot be."""
    device = device or pick_device()
    state = checkpoint.read(model_dir, device)
    path = Path(model_dir) / checkpoint.CHECKPOINT_FILE
    model_config, thresholds, preprocess = checkpoint.validated(state, path)
    try:
        model = nets.model_from_state_dict(model_config, state["state_dict"])
    except (RuntimeError, ValueError, TypeError) as error:
        raise ValueError(
            f"{path}: the weights do not match the model_config saved with them "
            f"({str(error).strip().splitlines()[0]})"
        ) from error
    training = state.get("train_config")
    return Predictor(
        model=model.to(device).eval(),
        model_config=model_config,
        thresholds=thresholds,
        preprocess=preprocess,
        device=device,
        **rule_flags(training if isinstance(training, dict) else {}),
    )


def classify(data: np.ndarray, header_lines: list[str], predictor: Predictor) -> tuple:
    """What run_12ECG_classifier returns for one recording; never raises on bad input.

    A recording that cannot be read or classified gets a warning naming it and the always-normal
    answer, which the challenge metric scores as 0 rather than the entry's failure.
    """
    name = "recording"
    try:
        record = records.from_arrays(data, header_lines)
        name = record.name or name
        x = signal.preprocess(record.signal, record.fs, predictor.preprocess)
        return predictor.answer(predictor.probabilities(x), x)
    except Exception as error:  # one bad recording must never cost an output
        logger.warning("%s: %s: %s; answering always-normal", name, type(error).__name__, error)
        return outputs.normal_answer()
