"""From a trained checkpoint to the clinical answer: windows, probabilities, labels.

One checkpoint file holds everything inference needs (weights of the unwrapped model, both
configurations as plain dicts, classes, thresholds, preprocessing constants) and loads with
`torch.load(..., weights_only=True)`: nothing from a model folder is unpickled.

A recording is preprocessed exactly as in training, cut into windows of the training length
covering it all (the last one aligned to its end; a short record is one zero-padded window),
and the windows' probabilities are averaged. The paper is silent on long records; averaging is
what the 2020 winner did, and unlike the maximum it does not turn one noisy window of a 30-minute
recording into a false positive.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ecg_gcn import config as cfg
from ecg_gcn import labels as lbl
from ecg_gcn import nets, outputs, records, signal
from ecg_gcn.atomic import write_atomically
from ecg_gcn.thresholds import decide

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "model.pt"
CHECKPOINT_FORMAT = 1
# Windows per forward pass at inference: a 30-minute record is 100 windows of 18 s.
WINDOW_BATCH = 16


def pick_device() -> torch.device:
    """CUDA when present, the CPU otherwise: decided once, passed everywhere."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    model_config: cfg.ModelConfig,
    train_config: cfg.TrainConfig,
    thresholds: np.ndarray,
    **extra: object,
) -> Path:
    """Write the self-sufficient checkpoint atomically (never a half-written model)."""
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    model = getattr(model, "module", model)  # DistributedDataParallel wrapper
    state = {
        "format": CHECKPOINT_FORMAT,
        "model_config": cfg.to_dict(model_config),
        "train_config": cfg.to_dict(train_config),
        "classes": list(lbl.CLASSES),
        "thresholds": [float(t) for t in thresholds],
        "preprocessing": {
            "fs": signal.TARGET_FS,
            "window": train_config.window_samples,
            "band": list(train_config.band) if train_config.band else None,
        },
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    return atomic_save(state, path)


def atomic_save(obj: object, path: str | Path) -> Path:
    """torch.save to a temporary file beside `path`, then rename: `path` is always whole."""
    return write_atomically(path, lambda tmp: torch.save(obj, tmp))


@dataclass
class Predictor:
    """A trained model ready for inference on one device."""

    model: nets.ECGNet
    model_config: cfg.ModelConfig
    thresholds: np.ndarray
    window: int
    device: torch.device
    band: tuple[float, float] | None = None  # the band-pass of training, applied alike here

    @torch.inference_mode()
    def probabilities_many(self, signals: Iterable[np.ndarray]) -> np.ndarray:
        """(N, 24) probabilities of N preprocessed (12, n) recordings at 500 Hz.

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
            w = signal.windows(np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0), self.window)
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

    def answer(self, probabilities: np.ndarray) -> tuple[list[int], list[float], list[str]]:
        """(labels, scores, classes) over the 27 scored codes, as the driver writes them:
        ints 0/1, floats in [0, 1], codes as strings; never an empty label set."""
        probabilities = np.clip(np.nan_to_num(probabilities, nan=0.0), 0.0, 1.0)
        labels = decide(probabilities[None], self.thresholds)[0]
        return (
            [int(x) for x in lbl.expand(labels)],
            [float(x) for x in lbl.expand(probabilities)],
            list(lbl.SCORED_CODES),
        )


def load(model_dir: str | Path, device: torch.device | None = None) -> Predictor:
    """The Predictor saved in `model_dir`; a clear error naming the file when it cannot be."""
    path = Path(model_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no trained model here; train one with train_model.py DATA {model_dir}"
        )
    device = device or pick_device()
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        if "unsupported global" in str(error).lower():  # not torch's hint to load it unsafely
            raise ValueError(
                f"{path}: refused: it holds Python objects, not only tensors and plain data"
            ) from error
        raise ValueError(
            f"{path}: not a loadable checkpoint: damaged (not a torch file)"
        ) from error
    except Exception as error:  # torch raises RuntimeError, EOFError... on a damaged file
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        reason = f"{type(error).__name__}: {first}" if first else type(error).__name__
        raise ValueError(
            f"{path}: not a loadable checkpoint: empty, truncated or damaged ({reason})"
        ) from error
    model_config, thresholds, window, band = _validated(state, path)
    try:
        model = nets.model_from_state_dict(model_config, state["state_dict"])
    except (RuntimeError, ValueError, TypeError) as error:
        raise ValueError(
            f"{path}: the weights do not match the model_config saved with them "
            f"({str(error).strip().splitlines()[0]})"
        ) from error
    return Predictor(
        model=model.to(device).eval(),
        model_config=model_config,
        thresholds=thresholds,
        window=window,
        device=device,
        band=band,
    )


_KEYS = ("format", "classes", "model_config", "state_dict", "thresholds", "preprocessing")


def _validated(state: object, path: Path) -> tuple:
    """(model_config, thresholds, window, band) of a checkpoint, each checked: a checkpoint
    that loads but is wrong must fail here, naming the field, not answer nonsense later."""
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a checkpoint of format {CHECKPOINT_FORMAT}")
    missing = [key for key in _KEYS if key not in state]
    if missing:
        raise ValueError(f"{path}: the checkpoint lacks {', '.join(missing)}")
    if list(state["classes"]) != list(lbl.CLASSES):
        raise ValueError(f"{path}: trained on other classes than weights.csv's")
    try:
        model_config = cfg.model_config_from_dict(state["model_config"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: model_config: {error}") from error
    thresholds = np.asarray(state["thresholds"], dtype=np.float64)
    if thresholds.shape != (lbl.NUM_CLASSES,) or not np.all((thresholds >= 0) & (thresholds <= 1)):
        raise ValueError(
            f"{path}: thresholds must be {lbl.NUM_CLASSES} numbers in [0, 1], "
            f"got shape {thresholds.shape}"
        )
    preprocessing = state["preprocessing"]
    window = preprocessing.get("window") if isinstance(preprocessing, dict) else None
    if not isinstance(window, int) or window <= 0:
        raise ValueError(
            f"{path}: preprocessing.window must be a positive number of samples, got {window!r}"
        )
    band = preprocessing.get("band")
    if band is not None:
        try:
            band = signal.checked_band(band)
        except ValueError as error:
            raise ValueError(f"{path}: preprocessing.{error}") from None
    return model_config, thresholds, window, band


def classify(data: np.ndarray, header_lines: list[str], predictor: Predictor) -> tuple:
    """What run_12ECG_classifier returns for one recording; never raises on bad input.

    A recording that cannot be read or classified gets a warning naming it and the always-normal
    answer, which the challenge metric scores as 0 rather than the entry's failure.
    """
    name = "recording"
    try:
        record = records.from_arrays(data, header_lines)
        name = record.name or name
        x = signal.preprocess(record.signal, record.fs, band=predictor.band)
        return predictor.answer(predictor.probabilities(x))
    except Exception as error:  # one bad recording must never cost an output
        logger.warning("%s: %s: %s; answering always-normal", name, type(error).__name__, error)
        return outputs.normal_answer()
